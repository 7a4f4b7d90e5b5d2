// fgrm reward inspector, state and API calls (render.js draws): a thin client of the public API (/v1/score, /v1/mix, /v1/profiles,
// /v1/feedback-types). No framework and no build step: this file is served as it is, so it
// must stay plain ES2020 that a current browser runs directly.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const view = window.fgrmView;  // render.js: segments, totals, chart, tabs
  const state = {
    types: [],        // /v1/feedback-types, in the server's order
    profiles: {},     // /v1/profiles: name -> complete weights
    examples: [],
    weights: {},      // what the sliders say (exact profile values until a slider moves)
    view: null,       // the feedback type whose segments are highlighted, or "mixed"
    scored: null,     // {cps, offsets, results}: what the last /v1/score was asked and answered
    mixSeq: 0,        // only the newest /v1/mix answer is applied when sliders move fast
    busy: false,
  };

  // ---- positions: the service counts Python string indices (code points); JS strings count
  // UTF-16 units, which differ after any character outside the BMP (emoji), so text is sliced
  // as an array of code points.
  const codePoints = (text) => Array.from(text);
  const slice = (cps, a, b) => cps.slice(a, b).join("");
  const isSpace = (ch) => /\s/u.test(ch);

  // Whitespace-separated words as [start, end): the positions of the dense reward. A trainer
  // sends its own tokenizer's offsets; words make the chart readable without one.
  function wordOffsets(cps) {
    const out = [];
    let start = -1;
    cps.forEach((ch, i) => {
      if (!isSpace(ch) && start < 0) start = i;
      else if (isSpace(ch) && start >= 0) { out.push([start, i]); start = -1; }
    });
    if (start >= 0) out.push([start, cps.length]);
    return out;
  }

  const fmtW = (w) => Number(w).toFixed(2);

  // ---- the API: every call carries the key when one is typed; errors keep the service's words
  class ApiError extends Error {
    constructor(status, error) {
      super(error.message || "error");
      this.status = status;
      this.kind = error.kind || "error";
      this.field = error.field || null;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const key = $("api-key").value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      throw new ApiError(0, { kind: "unreachable", message: `could not reach the service: ${err.message}` });
    }
    const text = await response.text();
    let doc = null;
    try { doc = JSON.parse(text); } catch (_) { /* a non-JSON answer is shown as text below */ }
    if (!response.ok) {
      const error = doc && doc.error && typeof doc.error === "object" ? doc.error : { kind: `HTTP ${response.status}`, message: text.slice(0, 500) };
      throw new ApiError(response.status, error);
    }
    return doc;
  }

  // ---- errors: shown as the service words them, and the input they name is marked invalid
  function showError(err) {
    const e = err instanceof ApiError ? err : new ApiError(0, { kind: "page", message: String(err) });
    $("error-kind").textContent = e.kind;
    $("error-status").textContent = e.status ? `HTTP ${e.status}` : "";
    $("error-field-row").hidden = !e.field;
    $("error-field").textContent = e.field || "";
    $("error-message").textContent = e.message;
    $("error").hidden = false;
    markInvalid(e.field);
  }

  function clearError() {
    $("error").hidden = true;
    markInvalid(null);
  }

  function markInvalid(field) {
    for (const el of document.querySelectorAll("[aria-invalid]")) {
      el.removeAttribute("aria-invalid");
      el.removeAttribute("aria-errormessage");
    }
    const m = field && /^items\[(\d+)\]\.(response|question|passages|reference)/.exec(field);
    const el = m && $(m[2] === "response" ? `response-${m[1]}` : m[2]);
    if (el) {
      el.setAttribute("aria-invalid", "true");
      el.setAttribute("aria-errormessage", "error");
    }
  }

  const status = (text) => { $("status").textContent = text; };
  // The service says per type what its head did with the reference; every response of one
  // request shares the question, passages and reference, so the first says it for all.
  const REFERENCE_WHY = { too_short: "too short", unrelated: "shares too little with the question and passages" };
  function referenceNote(results) {
    const types = results[0] ? results[0].types : {};
    const skipped = Object.entries(types).filter(([, t]) => t.reference && t.reference !== "read")
      .map(([name, t]) => `${name} (${REFERENCE_WHY[t.reference] || t.reference})`);
    return skipped.length ? ` The reference was not read by ${skipped.join(", ")}.` : "";
  }

  // ---- inputs
  const passages = () => $("passages").value.split(/\n[ \t]*\n/).map((p) => p.trim()).filter(Boolean);

  function countPassages() {
    const n = passages().length;
    $("passage-count").textContent = `${n} passage${n === 1 ? "" : "s"}.`;
  }

  function loadExample() {
    const ex = state.examples[Number($("example").value)];
    if (!ex) return;
    $("question").value = ex.question;
    $("passages").value = ex.passages.join("\n\n");
    $("reference").value = ex.reference || "";
    ex.responses.forEach((text, i) => { $(`response-${i}`).value = text; });
    countPassages();
    status("Example loaded: press Score.");
  }

  // Response A is always sent (an empty response is a valid result with no segments); B when
  // filled. Item i is therefore response box i, which is how an error's field finds its box.
  function responses() {
    const out = [$("response-0").value];
    if ($("response-1").value.trim()) out.push($("response-1").value);
    return out;
  }

  // ---- weights and profiles
  function renderSliders() {
    const box = $("sliders");
    box.replaceChildren();
    const top = Math.max(3, ...Object.values(state.profiles).flatMap((w) => Object.values(w)));
    for (const t of state.types) {
      const row = document.createElement("div");
      row.className = "slider";
      const label = document.createElement("label");
      label.htmlFor = `w-${t.name}`;
      label.textContent = t.name;
      const input = document.createElement("input");
      Object.assign(input, { type: "range", id: `w-${t.name}`, min: "0", max: String(Math.ceil(top)), step: "0.1" });
      input.dataset.type = t.name;
      const out = document.createElement("output");
      out.id = `w-${t.name}-out`;
      out.htmlFor = input.id;
      input.setAttribute("aria-describedby", out.id);
      input.addEventListener("input", () => {
        state.weights[t.name] = Number(input.value);
        out.textContent = fmtW(input.value);
        remix();
      });
      row.append(label, input, out);
      box.append(row);
    }
    setWeights(state.profiles[$("profile").value] || {});
  }

  function setWeights(weights) {
    for (const t of state.types) {
      const w = weights[t.name] ?? state.weights[t.name] ?? t.default_weight;
      state.weights[t.name] = w;
      const input = $(`w-${t.name}`);
      if (input) { input.value = String(w); $(`w-${t.name}-out`).textContent = fmtW(w); }
    }
  }

  function renderProfiles() {
    const select = $("profile");
    const was = select.value || "default";
    select.replaceChildren(...Object.keys(state.profiles).map((name) => new Option(name, name)));
    select.value = was in state.profiles ? was : Object.keys(state.profiles)[0];
  }

  async function remix() {
    if (!state.scored) return;
    const seq = ++state.mixSeq;
    const body = {
      items: state.scored.results.map((r, i) => ({ types: r.types, token_offsets: state.scored.offsets[i] })),
      profile: $("profile").value || null,
      weights: { ...state.weights },
    };
    try {
      const doc = await api("POST", "/v1/mix", body);
      if (seq !== state.mixSeq) return;
      doc.results.forEach((r, i) => Object.assign(state.scored.results[i], { mixed: r.mixed, token_rewards: r.token_rewards }));
      clearError();
      view.refreshMixed(state);
      document.body.dataset.mixApplied = String(seq);
    } catch (err) {
      if (seq === state.mixSeq) showError(err);
    }
  }

  // ---- scoring
  async function score(event) {
    event.preventDefault();
    if (state.busy) return;
    const texts = responses();
    const cps = texts.map(codePoints);
    const offsets = cps.map(wordOffsets);
    const body = {
      // an empty reference is left out: the request is then exactly what it was without the box
      items: texts.map((response, i) => ({ question: $("question").value, passages: passages(), response, token_offsets: offsets[i],
                                           ...($("reference").value.trim() ? { reference: $("reference").value } : {}) })),
      profile: $("profile").value || null,
    };
    if (state.types.length) body.weights = { ...state.weights };
    state.busy = true;
    $("score").setAttribute("aria-disabled", "true");
    $("results").setAttribute("aria-busy", "true");
    status("Scoring…");
    const started = performance.now();
    try {
      const doc = await api("POST", "/v1/score", body);
      state.scored = { cps, offsets, results: doc.results };
      clearError();
      setWeights(doc.results[0] ? doc.results[0].mixed.weights : {});
      view.render(state);
      status(`Scored ${texts.length} response${texts.length === 1 ? "" : "s"} in ${Math.round(performance.now() - started)} ms.`
             + referenceNote(doc.results));
    } catch (err) {
      showError(err);
      status("Not scored: see the error.");
    } finally {
      state.busy = false;
      $("score").removeAttribute("aria-disabled");
      $("results").removeAttribute("aria-busy");
    }
  }

  // ---- start-up: examples (static), then the server's types and profiles (need the key, if any)
  function renderModels() {
    const rows = state.types.map((t) => {
      const li = document.createElement("li");
      li.dataset.type = t.name;
      li.textContent = `${t.name} (${t.granularity}, ${t.kind}): ${t.model_version} on ${t.runtime} / ${t.provider}`
        + qualityText(t.quality || {});
      return li;
    });
    const list = document.createElement("ul");
    list.className = "models";
    list.append(...rows);
    $("models-body").replaceChildren(list);
    renderReferencePolicy();
  }

  // How far to trust a type: the CV its checkpoint records, beside the baseline the bar reads it against
  function qualityText(q) {
    const f = (x) => Number(x).toFixed(2);
    const [name, base, baseName] = q.auc !== undefined ? ["ROC-AUC", q.lexical_auc, "lexical"]
      : q.pairwise_accuracy !== undefined ? ["pairs ordered", q.prefer_earlier_accuracy, "prefer-earlier"] : [];
    if (!name) return "";
    const key = name === "ROC-AUC" ? "auc" : "pairwise_accuracy";
    let text = `; CV ${name} ${f(q[key])} ± ${f(q[`${key}_std`])} (${baseName} ${f(base)})`;
    if (q[`${key}_with_reference`] !== undefined) text += `, ${f(q[`${key}_with_reference`])} with a reference`;
    return text;
  }

  // What each type does with a reference, as /v1/feedback-types says (the checkpoint decides it)
  function renderReferencePolicy() {
    const readers = state.types.filter((t) => t.reads_reference);
    if (!readers.length) {
      $("reference-policy").textContent = "No type of this server reads a reference: it changes nothing.";
      return;
    }
    const names = readers.map((t) => (t.reference_min_words > 0
      ? `${t.name} (only one of ${t.reference_min_words} or more distinct content words)` : t.name));
    const shares = [...new Set(readers.map((t) => t.reference_min_context_share).filter((x) => x > 0))];
    let text = `Read by ${names.join(", ")}.`;
    if (shares.length) {
      text += ` One with under ${shares.map((x) => `${Math.round(x * 100)} %`).join(" / ")} of its content words`
        + " in the question and passages is ignored as another question's.";
    }
    $("reference-policy").textContent = text;
  }

  async function loadMeta() {
    try {
      const [ft, pr] = await Promise.all([api("GET", "/v1/feedback-types"), api("GET", "/v1/profiles")]);
      state.types = ft.types;
      state.profiles = pr.profiles;
      state.view = state.view || (state.types[0] && state.types[0].name);
      renderModels();
      renderProfiles();
      renderSliders();
      view.renderTabs(state);
      clearError();
      document.body.dataset.ready = "true";
    } catch (err) {
      $("models-body").textContent = "Not loaded (see the error); with an API key, type it above.";
      showError(err);
    }
  }

  async function loadExamples() {
    try {
      const response = await fetch("/inspect/examples.json");
      state.examples = (await response.json()).examples;
    } catch (_) {
      state.examples = [];
    }
    $("example").replaceChildren(...state.examples.map((ex, i) => new Option(ex.label, String(i))));
    $("load-example").disabled = !state.examples.length;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("inputs").addEventListener("submit", score);
    $("load-example").addEventListener("click", loadExample);
    $("passages").addEventListener("input", countPassages);
    $("api-key").addEventListener("change", loadMeta);
    $("profile").addEventListener("change", () => { setWeights(state.profiles[$("profile").value] || {}); remix(); });
    for (const id of ["question", "passages", "reference", "response-0", "response-1"]) {
      $(id).addEventListener("input", () => { if (state.scored) status("Inputs changed: Score again to update."); });
    }
    countPassages();
    loadExamples();
    loadMeta();
  });
})();
