"""The MQTT connector: Send and Listen over paho-mqtt, found by runtimes through pluggy."""
