/* The console's page: the forms come from the connector's schemas (rendered by json-editor, which
   also validates them in the browser); every operation is sent to the console's API, which
   validates again with the SDK and runs it through the harness's Runtime. Nothing here knows a
   connector: fields, titles, choices and conditions all come from the schemas. */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = { connectors: {}, editors: {}, keep: 200, events: null, listening: false };

  /* Validation messages in the SDK's words where the schema gives none of its own. */
  Object.assign(JSONEditor.defaults.languages.en, {
    error_notempty: "must not be empty",
    error_minLength: "must be at least {{0}} characters long",
    error_maxLength: "must be at most {{0}} characters long",
    error_minimum_incl: "must be at least {{0}}",
    error_minimum_excl: "must be more than {{0}}",
    error_maximum_incl: "must be at most {{0}}",
    error_maximum_excl: "must be less than {{0}}",
    error_pattern: "must match the pattern {{0}}",
    error_enum: "must be one of the choices",
    error_type: "must be of type {{0}}",
    error_minItems: "must hold at least {{0}} items",
    error_maxItems: "must hold at most {{0}} items",
    error_not: "is not valid",
    error_const: "is not valid here",
  });

  /* The fields a form requires (x-required) and the conditions it sets on the whole form
     (x-conditions: its if/then rules), checked with the library's own validator, so that their
     errors land on the fields they are about. */
  JSONEditor.defaults.custom_validators.push(function (schema, value, path) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return [];
    const errors = [];
    for (const name of schema["x-required"] || []) {
      if (value[name] === undefined) errors.push({ path: `${path}.${name}`, property: "required", message: `'${name}' is required` });
    }
    for (const condition of schema["x-conditions"] || []) errors.push(...this._validateSchema(condition, value, path));
    return errors;
  });

  async function api(path, body) {
    const response = await fetch(path, {
      method: body === undefined ? "GET" : "POST",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    let answer;
    try {
      answer = await response.json();
    } catch (e) {
      answer = { error: `${response.status} ${response.statusText}` };
    }
    answer.httpStatus = response.status;
    return answer;
  }

  function say(element, text, kind) {
    element.textContent = text || "";
    element.className = "result-line" + (kind ? " " + kind : "");
  }

  function makeEditor(holder, schema) {
    holder.textContent = "";
    return new JSONEditor(holder, {
      schema: schema,
      theme: "html",
      iconlib: null,
      disable_edit_json: true,
      disable_properties: true,
      disable_collapse: true,
      disable_array_delete_last_row: true,
      disable_array_reorder: false,
      required_by_default: false,
      show_errors: "interaction",
      prompt_before_delete: false,
      remove_empty_properties: true,
      use_default_values: false,
    });
  }

  function selectConnector(id) {
    const connector = state.connectors[id];
    stopEvents();
    for (const editor of Object.values(state.editors)) editor.destroy();
    state.editors = {};
    $("form-errors").hidden = true;
    $("send-results").hidden = true;
    $("listen-rows").querySelector("tbody").textContent = "";
    say($("check-result"), "");
    say($("send-summary"), "");
    $("connector-about").textContent = `${connector.name} ${connector.version}: ${connector.description || ""}`;
    if (connector.error) {
      $("load-error").textContent = `This connector's schemas cannot be shown as a form: ${connector.error}`;
      $("load-error").hidden = false;
      return;
    }
    $("load-error").hidden = true;
    for (const form of ["connection", "operation"]) {
      state.editors[form] = makeEditor($("form-" + form), connector.forms[form]);
    }
    state.editors.operation.on("ready", showRun);
    state.editors.operation.on("change", showRun);
  }

  function action() {
    const editor = state.editors.operation;
    const value = editor && editor.ready ? editor.getValue() : null;
    return value && value.action;
  }

  function showRun() {
    const chosen = action();
    $("run-send").hidden = chosen !== "send";
    $("run-listen").hidden = chosen !== "listen";
  }

  function showTab(name) {
    for (const tab of document.querySelectorAll("[role=tab]")) {
      const selected = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", String(selected));
      $("panel-" + tab.dataset.tab).hidden = !selected;
    }
  }

  /* Errors found in the browser: shown at their fields; the first form holding one is shown. */
  function browserErrors(forms) {
    const found = [];
    for (const form of forms) {
      const editor = state.editors[form];
      const errors = editor.validate();
      editor.root.showValidationErrors(errors);
      for (const error of errors) found.push({ form: form, path: error.path.replace(/^root\.?/, ""), message: error.message });
    }
    return found;
  }

  /* Errors the server found (the SDK's sentences): at their fields, and listed above the run. */
  function showErrors(errors) {
    const list = $("form-errors");
    list.textContent = "";
    const byForm = { connection: [], operation: [] };
    for (const error of errors) {
      if (error.form && error.path) {
        byForm[error.form].push({ path: "root." + error.path.split("/").join("."), property: "server", message: error.message });
      }
      const item = document.createElement("li");
      const where = error.form ? (error.form === "operation" ? "Options" : "Connection") + (error.path ? ` / ${error.path}` : "") : "";
      item.textContent = where ? `${where}: ${error.message}` : error.message;
      list.appendChild(item);
    }
    for (const form of Object.keys(byForm)) {
      const editor = state.editors[form];
      if (editor && byForm[form].length) editor.root.showValidationErrors(byForm[form]);
    }
    list.hidden = errors.length === 0;
    const first = errors.find((e) => e.form);
    if (first) showTab(first.form);
  }

  /* The forms' values as the connector takes them: a choice that may be left out is a text in the
     form (x-choices maps it back to its value). */
  function values(forms) {
    const body = { connector: $("connector").value };
    for (const form of forms) {
      const value = state.editors[form].getValue() || {};
      const properties = state.connectors[body.connector].forms[form].properties || {};
      for (const [name, schema] of Object.entries(properties)) {
        if (schema["x-choices"] && value[name] !== undefined) value[name] = schema["x-choices"][value[name]];
      }
      body[form] = value;
    }
    return body;
  }

  /* From the first run on, a form shows its errors on every field, not only those typed in.
     Switching revalidates at the next frame: wait for it, so that it cannot wipe out the errors
     the server is about to report. */
  async function showAllErrors(forms) {
    let switched = false;
    for (const form of forms) {
      const editor = state.editors[form];
      if (editor.options.show_errors !== "always") {
        editor.setOption("show_errors", "always");
        switched = true;
      }
    }
    if (switched) await new Promise((resolve) => requestAnimationFrame(resolve));
  }

  /* Validate in the browser, then run on the server; null (errors shown) when invalid. */
  async function run(path, forms, extra, line) {
    await showAllErrors(forms);
    const found = browserErrors(forms);
    if (found.length) {
      showErrors(found);
      say(line, "fix the fields marked in red", "bad");
      return null;
    }
    showErrors([]);
    const answer = await api(path, Object.assign(values(forms), extra || {}));
    if (answer.errors) {
      showErrors(answer.errors);
      say(line, "the connector refused the configuration: see the fields marked in red", "bad");
      return null;
    }
    if (answer.error) {
      say(line, answer.error, "bad");
      return null;
    }
    return answer;
  }

  async function check() {
    say($("check-result"), "checking...");
    const answer = await run("/api/check", ["connection"], {}, $("check-result"));
    if (answer) say($("check-result"), "ok: " + answer.line, "good");
  }

  function readFile(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => {
        const bytes = new Uint8Array(reader.result);
        let binary = "";
        for (let i = 0; i < bytes.length; i += 0x8000) {
          binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
        }
        resolve({ name: file.name, base64: btoa(binary) });
      };
      reader.onerror = () => reject(reader.error);
      reader.readAsArrayBuffer(file);
    });
  }

  async function send() {
    const line = $("send-summary");
    const documents = [];
    const text = $("send-text").value;
    const mode = document.querySelector("input[name=send-mode]:checked").value;
    if (text !== "") documents.push(mode === "lines" ? { lines: text } : { text: text });
    for (const file of $("send-files").files) documents.push(await readFile(file));
    if (!documents.length) {
      say(line, "nothing to send: type a document or choose files", "bad");
      return;
    }
    say(line, "sending...");
    const answer = await run("/api/send", ["connection", "operation"], { documents: documents }, line);
    if (!answer) return;
    const body = $("send-results").querySelector("tbody");
    body.textContent = "";
    for (const result of answer.results) {
      const row = body.insertRow();
      row.className = result.status === "SUCCESS" ? "good" : "bad";
      for (const cell of [String(result.index + 1), result.name, result.status, result.error || result.note || ""]) {
        row.insertCell().textContent = cell;
      }
    }
    $("send-results").hidden = false;
    const failed = answer.results.some((r) => r.status !== "SUCCESS");
    say(line, answer.summary, failed ? "bad" : "good");
  }

  function listenRow(item) {
    const body = $("listen-rows").querySelector("tbody");
    const row = document.createElement("tr");
    row.className = item.acknowledged ? "good" : "bad";
    row.insertCell().textContent = String(item.seq);
    const payload = row.insertCell();
    const preview = document.createElement("pre");
    preview.textContent = item.preview;
    payload.appendChild(preview);
    const about = document.createElement("span");
    about.className = "muted";
    about.textContent = `${item.encoding}, ${item.size} byte${item.size === 1 ? "" : "s"}${item.truncated ? ", preview cut" : ""}`;
    payload.appendChild(about);
    const properties = row.insertCell();
    const list = document.createElement("dl");
    for (const [key, value] of Object.entries(item.properties)) {
      const term = document.createElement("dt");
      term.textContent = key;
      const detail = document.createElement("dd");
      detail.textContent = typeof value === "string" ? value : JSON.stringify(value);
      list.append(term, detail);
    }
    properties.appendChild(list);
    row.insertCell().textContent = item.acknowledged ? "yes" : "no (refused)";
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > state.keep) body.deleteRow(body.rows.length - 1);
  }

  function stopEvents() {
    if (state.events) state.events.close();
    state.events = null;
    listeningButtons(false);
  }

  function listeningButtons(on) {
    state.listening = on;
    $("listen-start").disabled = on;
    $("listen-stop").disabled = !on;
  }

  async function listenStart() {
    const status = $("listen-status");
    say(status, "starting...");
    $("listen-rows").querySelector("tbody").textContent = "";
    const answer = await run("/api/listen", ["connection", "operation"], { refuse: $("listen-refuse").checked }, status);
    if (!answer) return;
    say(status, answer.line, "good");
    listeningButtons(true);
    const events = new EventSource("/api/listen/events");
    state.events = events;
    events.addEventListener("row", (event) => listenRow(JSON.parse(event.data)));
    events.addEventListener("end", (event) => {
      const ended = JSON.parse(event.data);
      stopEvents();
      const text = `ended (${ended.reason})` + (ended.accepted !== undefined ? `: ${ended.accepted} accepted` : "") +
        (ended.dead_lettered ? `, ${ended.dead_lettered} moved after failing` : "") + (ended.error ? `; ${ended.error}` : "");
      say(status, text, ended.reason === "stopped" || ended.reason === "count" ? "" : "bad");
    });
  }

  async function listenStop() {
    say($("listen-status"), "stopping...");
    const answer = await api("/api/listen/stop", {});
    if (answer.error) say($("listen-status"), answer.error, "bad");
    else if (!answer.was_running) say($("listen-status"), answer.line);  /* else its end event says how it ended */
  }

  async function start() {
    const answer = await api("/api/connectors");
    if (!answer.connectors) {
      $("load-error").textContent = answer.error || "the console could not list the connectors";
      $("load-error").hidden = false;
      return;
    }
    state.keep = answer.keep;
    $("listen-keep").textContent = String(answer.keep);
    const picker = $("connector");
    for (const connector of answer.connectors) {
      state.connectors[connector.id] = connector;
      const option = document.createElement("option");
      option.value = connector.id;
      option.textContent = `${connector.name} (${connector.id})`;
      picker.appendChild(option);
    }
    if (!answer.connectors.length) {
      $("load-error").textContent = "no connector is installed";
      $("load-error").hidden = false;
      return;
    }
    picker.value = state.connectors[answer.first] ? answer.first : answer.connectors[0].id;
    picker.addEventListener("change", () => selectConnector(picker.value));
    for (const tab of document.querySelectorAll("[role=tab]")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
    $("check").addEventListener("click", check);
    $("send").addEventListener("click", send);
    $("listen-start").addEventListener("click", listenStart);
    $("listen-stop").addEventListener("click", listenStop);
    selectConnector(picker.value);
  }

  start();
})();
