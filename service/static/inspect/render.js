// fgrm reward inspector, the drawing half: highlighted segments, totals, the dense-reward chart,
// the feedback-type tabs and the segment tooltip. It reads the state inspect.js keeps and never
// calls the API. Colours are never the only cue: a sign also shows as ▲/▼, an underline style
// and, in the chart, a hatch pattern.
"use strict";
window.fgrmView = (() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const LETTERS = "AB";
  const MIXED = "mixed";
  const fmt = (x) => (x < 0 ? "-" : "+") + Math.abs(x).toFixed(3);
  const slice = (cps, a, b) => cps.slice(a, b).join("");
  const sign = (x) => (x < 0 ? "neg" : x > 0 ? "pos" : "zero");
  const el = (tag, props = {}, ...children) => {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children);
    return node;
  };

  // ---- tabs: one per feedback type, plus the mix (the only highlight that weights change)
  function renderTabs(state) {
    const list = $("type-tabs");
    const names = [...state.types.map((t) => t.name), MIXED];
    if (!names.includes(state.view)) state.view = names[0];
    list.replaceChildren(...names.map((name) => {
      const t = state.types.find((x) => x.name === name);
      const tab = el("button", { type: "button", id: `tab-${name}`, className: "tab" },
                     name, " ", el("span", { className: "gran", textContent: t ? t.granularity : "weighted sum" }));
      tab.setAttribute("role", "tab");
      tab.setAttribute("aria-controls", "columns");
      tab.dataset.view = name;
      tab.addEventListener("click", () => select(state, name, false));
      tab.addEventListener("keydown", (e) => {
        const step = { ArrowRight: 1, ArrowLeft: -1, Home: -names.length, End: names.length }[e.key];
        if (step === undefined) return;
        e.preventDefault();
        const j = Math.max(0, Math.min(names.length - 1, names.indexOf(name) + step));
        select(state, names[j], true);
      });
      return tab;
    }));
    markTabs(state);
  }

  function markTabs(state) {
    for (const tab of $("type-tabs").children) {
      const on = tab.dataset.view === state.view;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;  // roving tab stop: Tab enters the list once, arrows move in it
    }
    $("columns").setAttribute("aria-labelledby", `tab-${state.view}`);
  }

  function select(state, name, focus) {
    state.view = name;
    markTabs(state);
    if (focus) $(`tab-${name}`).focus();
    if (state.scored) state.scored.results.forEach((r, i) => drawText(state, r, i));
  }

  // ---- segments of the chosen view: a type's own, or the mix's events, each covering the
  // text since the previous event (a reward lands at its segment's end)
  function segments(state, result, cps) {
    if (state.view !== MIXED) {
      const t = result.types[state.view];
      if (!t) return [];
      return t.segments.map((s) => ({ start: s.start, end: s.end, reward: s.reward, detail: typeDetail(state.view, t, s) }));
    }
    let prev = 0;
    return result.mixed.events.map((ev) => {
      let start = prev;
      while (start < ev.end && /\s/u.test(cps[start])) start += 1;
      prev = ev.end;
      return { start, end: ev.end, reward: ev.reward, detail: mixedDetail(result, ev) };
    });
  }

  function typeDetail(name, t, s) {
    const model = ["p_error", "score", "p_bad"].filter((k) => s[k] !== undefined).map((k) => `${k} ${s[k].toFixed(3)}`);
    return [`${name} (${t.granularity})`, `chars ${s.start}–${s.end}`, ...model, `reward ${fmt(s.reward)}`].join(" · ");
  }

  function mixedDetail(result, ev) {
    const w = result.mixed.weights;
    const parts = Object.entries(result.types).flatMap(([name, t]) => t.segments
      .filter((s) => s.end === ev.end).map((s) => `${name} ${Number(w[name]).toFixed(2)}×${fmt(s.reward)}`));
    return [`mixed at char ${ev.end}`, `reward ${fmt(ev.reward)}`, parts.join(" + ")].filter(Boolean).join(" · ");
  }

  function drawText(state, result, i) {
    const box = $(`text-${i}`);
    const cps = state.scored.cps[i];
    const segs = segments(state, result, cps);
    const top = Math.max(1e-9, ...segs.map((s) => Math.abs(s.reward)));
    box.replaceChildren();
    let pos = 0;
    segs.forEach((s, j) => {
      const start = Math.max(s.start, pos);
      if (start > pos) box.append(slice(cps, pos, start));
      const mark = el("mark", { className: `seg ${sign(s.reward)}`, tabIndex: 0, textContent: slice(cps, start, s.end) });
      mark.style.setProperty("--strength", (0.25 + 0.75 * Math.abs(s.reward) / top).toFixed(3));
      Object.assign(mark.dataset, { start: String(s.start), end: String(s.end), reward: String(s.reward), tip: s.detail });
      const desc = el("span", { id: `seg-${i}-${j}`, hidden: true, textContent: s.detail });
      mark.setAttribute("aria-describedby", desc.id);
      box.append(mark, desc);
      pos = Math.max(pos, s.end);
    });
    if (pos < cps.length) box.append(slice(cps, pos));
    box.dataset.view = state.view;
    if (!segs.length) box.append(el("span", { className: "muted", textContent: " (no segments)" }));
  }

  // ---- totals: per type (its granularity is on its tab), its weight and weighted share; then the mix
  function totalsTable(state, result, i) {
    const rows = Object.entries(result.types).map(([name, t]) => el("tr", {},
      el("th", { scope: "row", textContent: name }),
      numberCell(t.total, { role: "type-total", type: name }),
      el("td", { className: "num", id: `weight-${i}-${name}` }),
      el("td", { className: "num", id: `weighted-${i}-${name}` })));
    const head = el("tr", {}, ...["type", "total", "weight", "weight × total"]
      .map((h) => el("th", { scope: "col", textContent: h })));
    const foot = el("tr", {}, el("th", { scope: "row", colSpan: 3, textContent: "mixed reward" }),
      numberCell(result.mixed.total, { role: "mixed-total" }, `mixed-${i}`));
    return el("table", { className: "totals" }, el("caption", { textContent: `Totals, response ${LETTERS[i]}` }),
      el("thead", {}, head), el("tbody", {}, ...rows), el("tfoot", {}, foot));
  }

  function numberCell(value, data, id) {
    const td = el("td", { className: `num ${sign(value)}`, textContent: fmt(value) });
    if (id) td.id = id;
    Object.assign(td.dataset, data, { value: String(value) });
    return td;
  }

  function fillMixed(state, result, i) {
    const w = result.mixed.weights;
    for (const [name, t] of Object.entries(result.types)) {
      $(`weight-${i}-${name}`).textContent = Number(w[name]).toFixed(2);
      $(`weighted-${i}-${name}`).textContent = fmt(w[name] * t.total);
    }
    for (const td of [$(`mixed-${i}`), $(`headline-${i}`)]) {
      td.textContent = fmt(result.mixed.total);
      td.dataset.value = String(result.mixed.total);
      td.className = `num ${sign(result.mixed.total)}`;
    }
    drawChart(state, result, i);
  }

  // ---- the dense reward: token_rewards over the response's words, hand-drawn SVG bars
  function drawChart(state, result, i) {
    const rewards = result.token_rewards || [];
    const svg = $(`chart-${i}`);
    const W = 560, H = 130, L = 44, R = 8, T = 10, B = 22;
    const mid = T + (H - T - B) / 2, half = (H - T - B) / 2;
    const top = Math.max(1e-9, ...rewards.map(Math.abs));
    const step = (W - L - R) / Math.max(1, rewards.length);
    const node = (tag, attrs, text) => {
      const n = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
      if (text !== undefined) n.textContent = text;
      return n;
    };
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const hatch = node("pattern", { id: `hatch-${i}`, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
    hatch.append(node("rect", { width: 6, height: 6, class: "hatch-bg" }), node("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch-line" }));
    svg.append(node("defs", {}), node("line", { x1: L, x2: W - R, y1: mid, y2: mid, class: "axis" }));
    svg.firstChild.append(hatch);
    svg.append(node("text", { x: L - 4, y: T + 8, class: "tick", "text-anchor": "end" }, fmt(top)),
               node("text", { x: L - 4, y: mid + 4, class: "tick", "text-anchor": "end" }, "0"),
               node("text", { x: L - 4, y: H - B, class: "tick", "text-anchor": "end" }, fmt(-top)),
               node("text", { x: L, y: H - 6, class: "tick" }, "word 1"),
               node("text", { x: W - R, y: H - 6, class: "tick", "text-anchor": "end" }, `word ${rewards.length}`));
    const cps = state.scored.cps[i], offsets = state.scored.offsets[i];
    rewards.forEach((r, k) => {
      if (r === 0) return;
      const h = Math.max(1, (Math.abs(r) / top) * half);
      const bar = node("rect", { x: L + k * step + step * 0.1, width: Math.max(1, step * 0.8), y: r > 0 ? mid - h : mid, height: h,
                                 class: `bar ${sign(r)}`, fill: r < 0 ? `url(#hatch-${i})` : "currentColor" });
      bar.append(node("title", {}, `word ${k + 1} "${slice(cps, offsets[k][0], offsets[k][1])}": ${fmt(r)}`));
      svg.append(bar);
    });
    const nonzero = rewards.filter((r) => r !== 0);
    svg.setAttribute("aria-label", `Dense mixed reward over ${rewards.length} words: ${nonzero.length} carry a reward, ` +
      `${nonzero.filter((r) => r < 0).length} of them negative; sum ${fmt(nonzero.reduce((a, b) => a + b, 0))}.`);
  }

  // ---- one column per response
  function render(state) {
    const columns = $("columns");
    columns.replaceChildren(...state.scored.results.map((result, i) => {
      const headline = el("strong", { id: `headline-${i}` });
      const svg = document.createElementNS(SVG, "svg");
      svg.id = `chart-${i}`;
      svg.setAttribute("role", "img");
      svg.classList.add("chart");
      return el("article", { className: "result", id: `result-${i}` },
        el("h3", {}, `Response ${LETTERS[i]} `, el("span", { className: "headline" }, "mixed reward ", headline)),
        el("p", { className: "text", id: `text-${i}` }),
        totalsTable(state, result, i),
        el("figure", { className: "figure" }, svg,
          el("figcaption", { textContent: "Dense mixed reward per word (what a PPO trainer adds at each token); ▼ hatched bars are penalties." })));
    }));
    state.scored.results.forEach((result, i) => { drawText(state, result, i); fillMixed(state, result, i); });
    $("columns").dataset.results = String(state.scored.results.length);
  }

  function refreshMixed(state) {
    state.scored.results.forEach((result, i) => {
      fillMixed(state, result, i);
      if (state.view === MIXED) drawText(state, result, i);
    });
  }

  // ---- the tooltip: on hover and on keyboard focus; Escape dismisses it
  function showTip(target) {
    const tip = $("tip");
    tip.textContent = target.dataset.tip;
    tip.hidden = false;
    const rect = target.getClientRects()[0] || target.getBoundingClientRect();
    const left = Math.min(rect.left, document.documentElement.clientWidth - tip.offsetWidth - 8);
    tip.style.left = `${Math.max(4, left) + window.scrollX}px`;
    tip.style.top = `${rect.bottom + window.scrollY + 6}px`;
  }
  const hideTip = () => { $("tip").hidden = true; };
  for (const kind of ["mouseover", "focusin"]) {
    document.addEventListener(kind, (e) => {
      const seg = e.target.closest && e.target.closest("mark.seg[data-tip]");
      if (seg) showTip(seg);
      else if (kind === "focusin") hideTip();
    });
  }
  document.addEventListener("mouseout", (e) => { if (e.target.closest && e.target.closest("mark.seg")) hideTip(); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") hideTip(); });

  return { render, renderTabs, refreshMixed };
})();
