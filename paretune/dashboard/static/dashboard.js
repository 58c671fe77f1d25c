/* paretune dashboard: draws the report model's JSON (storage/report.py via paretune/dashboard/payload.py)
   with plotly.js, and refreshes when the experiment changes. The same file serves the live pages and
   is inlined into the static report, which must open offline from one HTML file: that is why it is
   one file (about 600 lines: the shared helpers, the experiment page's panels, the run page). */
(function () {
  "use strict";

  const COLORS = { feasible: "#2563eb", infeasible: "#f59e0b", failed: "#dc2626", frontier: "#111827", stopped: "#6b7280", grid: "#e5e7eb" };
  const WEBGL_ABOVE = 5000;       // points per chart beyond which scattergl draws them
  const PARCOORDS_LINES = 5000;   // lines drawn at most (evenly sampled)
  const PAGE_ROWS = 50;
  const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
  const FONT = { family: "system-ui, -apple-system, Segoe UI, Roboto, Helvetica Neue, Arial, sans-serif", size: 12, color: "#1f2430" };

  /* The number rule of storage.report.format_number: whole numbers whole (with separators), others with
     4 significant digits, in scientific notation below 1e-3 and from 1e6 on. */
  function fmt(value, digits) {
    digits = digits || 4;
    if (value === null || value === undefined) return "";
    if (typeof value !== "number") return String(value);
    if (!isFinite(value)) return String(value);
    if (Number.isInteger(value) && Math.abs(value) < 1e15) return grouped(String(value));
    const magnitude = Math.abs(value);
    if (magnitude < 1e-3 || magnitude >= 1e6) {
      const parts = value.toExponential(digits - 1).split("e");
      return trim(parts[0]) + "e" + parseInt(parts[1], 10);
    }
    const decimals = Math.max(0, digits - 1 - Math.floor(Math.log10(magnitude)));
    return grouped(trim(value.toFixed(decimals)));
  }
  function trim(text) { return text.indexOf(".") >= 0 ? text.replace(/0+$/, "").replace(/\.$/, "") : text; }
  function grouped(text) {  /* thousands separators in the whole part only, as Python's "{:,}" */
    const [whole, fraction] = text.split(".");
    return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (fraction === undefined ? "" : "." + fraction);
  }

  /* An axis's d3 tick format that writes ticks as fmt writes values: grouped digits (22,000,000),
     trimmed decimals (0.35), scientific notation for tiny values. Hovers carry fmt's own text. */
  function axisFormat(values) {
    let top = 0;
    for (const v of values) if (typeof v === "number" && isFinite(v)) top = Math.max(top, Math.abs(v));
    return top > 0 && top < 1e-3 ? ".3~e" : ",~r";
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "html") node.innerHTML = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
    }
    for (const child of [].concat(children || [])) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function metricLabel(metric) { return metric.name + (metric.strategy === "store" ? "" : metric.objective === "maximize" ? " (max)" : " (min)"); }

  /* ---------------------------------------------------------------- the experiment page */
  function experimentPage(config) {
    const state = { data: null, version: config.version, sort: { key: "trial", dir: 1 }, filter: "", status: "all", page: 0,
                    selected: null, rowText: null, shown: { parameters: false, stored: false, margins: false } };
    window.paretune.state = state;
    const live = document.getElementById("live");
    const inline = document.getElementById("report-data");

    function draw(data) {
      expand(data);
      state.data = data;
      state.version = data.version;
      state.rowText = null;
      document.getElementById("experiment-title").textContent = data.experiment.name + " (experiment " + data.experiment.id + ")";
      drawSummary(data);
      drawScatter(data, state, select);
      drawHistory(data);
      drawParcoords(data);
      drawThresholds(data);
      drawTrials(data, state, select);
      if (data.importance) drawImportance(data.importance);
      else if (!document.querySelector("#importance .main-svg")) showReason("importance", "Computing parameter importance (a random forest per optimized metric)…");
      if (state.selected !== null) select(findIndex(data, state.selected));
      document.body.dataset.version = data.version;
    }

    function select(index) {
      if (index === null || index < 0) return;
      state.selected = state.data.points.observation[index];
      drawSelected(state.data, index, config);
    }

    async function load() {
      const response = await fetch(config.dataUrl, { cache: "no-store" });
      if (!response.ok) throw new Error((await response.json()).detail || response.statusText);
      draw(await response.json());
      if (config.importanceUrl) loadImportance();
    }

    async function loadImportance() {
      if (state.data.importance) return;  // it came with the report
      const version = state.version;
      try {
        const response = await fetch(config.importanceUrl, { cache: "no-store" });
        const body = await response.json();
        if (!response.ok) throw new Error(body.detail || response.statusText);
        if (version === state.version) drawImportance(body);
      } catch (error) {
        showReason("importance", "Parameter importance could not be computed: " + error.message);
      }
    }

    async function poll() {
      try {
        const response = await fetch(config.versionUrl, { cache: "no-store" });
        const body = await response.json();
        if (!response.ok) throw new Error(body.detail || response.statusText);
        if (body.version !== state.version) await load();
        showLive(body.state, body.open);
        if (body.state !== "active") clearInterval(timer);
      } catch (error) {
        live.textContent = "refresh failed, retrying: " + error.message;
        live.className = "badge status-failed";
      }
    }

    /* The experiment's state word, as the experiments page and `paretune list` write it (active,
       completed, archived), then what is running and when the page last checked. */
    function showLive(experimentState, open) {
      if (!config.live) { live.textContent = experimentState + " · static report"; live.className = "badge state-" + experimentState; return; }
      const parts = [experimentState];
      if (open > 0) parts.push("running · " + open + " in flight");
      if (experimentState === "active") parts.push("checked " + new Date().toLocaleTimeString());
      live.textContent = parts.join(" · ");
      live.className = "badge state-" + experimentState + (open > 0 ? " live" : "");
    }

    let timer = null;
    if (inline) {
      draw(JSON.parse(inline.textContent));
      showLive(state.data.experiment.state, 0);
    } else {
      load().then(() => showLive(state.data.experiment.state, state.data.summary.open))
            .catch((error) => { live.textContent = "could not load: " + error.message; live.className = "badge status-failed"; });
    }
    if (config.live) timer = setInterval(poll, config.refreshMs);
  }

  /* Undo the payload's compact encoding (see paretune/dashboard/payload.py). */
  function expand(data) {
    const p = data.points, n = p.observation.length;
    p.status = p.status.map((code) => data.statuses[code]);
    const frontier = new Array(n).fill(false);
    for (const i of p.frontier) frontier[i] = true;
    p.frontier = frontier;
    const reason = new Array(n).fill(null);
    for (const [i, text] of Object.entries(p.reason)) reason[Number(i)] = text;
    p.reason = reason;
  }

  /* A panel that cannot draw yet says why; the reason goes when it draws. */
  function showReason(id, text) {
    const node = document.getElementById(id);
    Plotly.purge(node);
    node.replaceChildren(el("p", { class: "muted reason-text", text: text }));
  }
  function clearReason(node) { for (const child of node.querySelectorAll(":scope > p")) child.remove(); }

  function findIndex(data, observationId) { return data.points.observation.indexOf(observationId); }

  function drawSummary(data) {
    const s = data.summary;
    const tiles = [];
    const percent = s.budget ? Math.min(100, 100 * s.observations / s.budget) : 0;
    tiles.push(tile("Budget used", fmt(s.observations) + (s.budget ? " / " + fmt(s.budget) : ""),
                    s.budget ? fmt(s.remaining === undefined ? s.budget - s.observations : s.remaining) + " left · " + s.open + " in flight" : "no budget",
                    s.budget ? el("div", { class: "bar" }, el("div", { style: "width:" + percent.toFixed(1) + "%" })) : null));
    tiles.push(tile("Completed", fmt(s.completed), fmt(s.feasible) + " feasible · " + fmt(s.infeasible) + " infeasible"));
    tiles.push(tile("Failed", fmt(s.failed), s.failures_by_kind.map(([kind, n]) => kind + " " + fmt(n)).join(" · ") || "none",
                    null, s.failures_by_reason.map(([reason, n]) => n + " × " + reason).join("\n")));
    for (const best of s.best) {
      tiles.push(tile("Best " + best.metric + (best.objective === "maximize" ? " (max)" : " (min)"), best.text,
                      "trial " + best.trial + (best.strategy === "constraint" ? " · constraint" : ""), null, best.assignments));
    }
    tiles.push(tile("Last activity", s.last_activity ? s.last_activity.slice(11, 19) : "none", s.last_activity ? s.last_activity.slice(0, 10) : ""));
    document.getElementById("summary").replaceChildren(...tiles);
  }

  function tile(label, value, detail, extra, title) {
    return el("div", { class: "tile", title: title || null },
              [el("div", { class: "label", text: label }), el("div", { class: "value", text: value }), extra || null,
               el("div", { class: "detail", text: detail })]);
  }

  /* Indices of the points by how the scatter styles them. */
  function groups(data) {
    const out = { frontier: [], feasible: [], infeasible: [], failed: [], stopped: [] };
    const p = data.points;
    for (let i = 0; i < p.status.length; i++) {
      if (p.status[i] === "failed") out.failed.push(i);
      else if (p.frontier[i]) out.frontier.push(i);
      else out[p.status[i]].push(i);
    }
    return out;
  }

  /* Hover rows carry text written by fmt, so a value reads the same in hovers, axes and tables:
     [index, trial, run, x text, y text, ...parameters]. */
  const FIRST_PARAMETER = 5;
  function hoverParts(data) {
    return data.parameters.map((q, k) => q.name + ": %{customdata[" + (k + FIRST_PARAMETER) + "]}").join("<br>");
  }
  function customdata(data, indices, xOf, yOf) {
    const p = data.points;
    return indices.map((i) => [i, p.trial[i], p.run[i] === null ? "no run" : "run " + p.run[i], fmt(xOf(i)), fmt(yOf(i)),
                               ...data.parameters.map((q) => fmt(p.assignments[q.name][i]))]);
  }

  function drawScatter(data, state, select) {
    const node = document.getElementById("scatter");
    const p = data.points;
    const byStatus = groups(data);
    const twoMetrics = data.optimized.length === 2;
    const metric = (name) => data.metrics.find((m) => m.name === name);
    const xMetric = twoMetrics ? metric(data.optimized[0]) : null;
    const yMetric = metric(twoMetrics ? data.optimized[1] : data.optimized[0]);
    const xOf = (i) => (twoMetrics ? p.values[xMetric.name][i] : p.trial[i]);
    const yOf = (i) => p.values[yMetric.name][i];
    const params = hoverParts(data);
    const xLine = twoMetrics ? xMetric.name + ": %{customdata[3]}<br>" : "";
    const hover = (label) => "<b>trial %{customdata[1]}</b> · %{customdata[2]}<br>" + xLine + yMetric.name +
                             ": %{customdata[4]}<br>" + params + "<extra>" + label + "</extra>";
    if (!p.status.length) { showReason("scatter", "No trial has finished yet: each point appears here as its trial ends."); return; }
    const big = p.status.length > WEBGL_ABOVE;
    const styles = {
      frontier: { name: "frontier", marker: { color: COLORS.feasible, size: 10, symbol: "circle", line: { color: COLORS.frontier, width: 2 } } },
      feasible: { name: "feasible", marker: { color: COLORS.feasible, size: 7, opacity: 0.75 } },
      infeasible: { name: "infeasible", marker: { color: COLORS.infeasible, size: 7, symbol: "circle-open", line: { width: 1.5 } } },
      stopped: { name: "stopped early", marker: { color: COLORS.stopped, size: 7, symbol: "triangle-down", opacity: 0.7 } },
    };
    const traces = [];
    for (const status of ["feasible", "infeasible", "stopped", "frontier"]) {
      const indices = byStatus[status];
      traces.push(Object.assign({
        type: big ? "scattergl" : "scatter", mode: "markers", x: indices.map(xOf), y: indices.map(yOf),
        customdata: customdata(data, indices, xOf, yOf), hovertemplate: hover(status === "frontier" ? "frontier" : status),
        meta: status,
      }, styles[status], { name: styles[status].name + " (" + fmt(indices.length) + ")" }));
    }
    const corners = twoMetrics ? data.staircase : { x: data.history.x, y: data.history.y };
    traces.push({ type: "scatter", mode: "lines", x: corners.x, y: corners.y, name: twoMetrics ? "frontier line" : "best so far",
                  line: { color: COLORS.frontier, width: 2, shape: twoMetrics ? "linear" : "hv" }, hoverinfo: "skip", meta: "line" });
    const failed = byStatus.failed;
    const layout = baseLayout();
    layout.legend = { orientation: "h", y: 1.08, x: 0 };
    const trials = wholeTicks(0, Math.max(0, ...p.trial) + 1);
    layout.xaxis = Object.assign({ automargin: true, title: { text: twoMetrics ? metricLabel(xMetric) : "trial" }, gridcolor: COLORS.grid,
                                   zeroline: false }, twoMetrics ? { tickformat: axisFormat(p.values[xMetric.name]) } : trials);
    layout.yaxis = { automargin: true, title: { text: metricLabel(yMetric) }, gridcolor: COLORS.grid, zeroline: false, domain: failed.length ? [0.2, 1] : [0, 1],
                     tickformat: axisFormat(p.values[yMetric.name]) };
    if (failed.length) {
      traces.push({ type: big ? "scattergl" : "scatter", mode: "markers", x: failed.map((i) => p.trial[i]), y: failed.map(() => 0),
                    xaxis: "x2", yaxis: "y2", name: "failed (" + fmt(failed.length) + ")", meta: "failed",
                    marker: { color: COLORS.failed, size: 8, symbol: "x-thin", line: { color: COLORS.failed, width: 2 } },
                    customdata: customdata(data, failed, xOf, yOf).map((row, k) => row.concat([p.reason[failed[k]] || ""])),
                    hovertemplate: "<b>trial %{customdata[1]}</b> · %{customdata[2]}<br>failed: %{customdata[" + (data.parameters.length + FIRST_PARAMETER) +
                                   "]}<br>" + params + "<extra>failed</extra>" });
      layout.xaxis2 = Object.assign({ anchor: "y2", title: { text: "failed trials (no metric values), by trial number", font: { size: 11 } },
                                      gridcolor: COLORS.grid, zeroline: false }, trials);
      if (twoMetrics) layout.xaxis2.range = [0, Math.max(...p.trial) + 1];
      else layout.xaxis2.matches = "x";
      layout.yaxis2 = { domain: [0, 0.07], showticklabels: false, showgrid: false, zeroline: false, fixedrange: true, range: [-1, 1] };
      layout.margin.b = 50;
    }
    const shapes = [], annotations = [];
    const addThreshold = (m, axis) => {
      if (!m || m.threshold === null) return;
      const vertical = axis === "x";
      shapes.push({ type: "line", xref: vertical ? "x" : "x domain", yref: vertical ? "y domain" : "y",
                    x0: vertical ? m.threshold : 0, x1: vertical ? m.threshold : 1, y0: vertical ? 0 : m.threshold, y1: vertical ? 1 : m.threshold,
                    line: { color: "#6b7280", width: 1.5, dash: "dash" } });
      annotations.push({ xref: vertical ? "x" : "x domain", yref: vertical ? "y domain" : "y", x: vertical ? m.threshold : 1,
                         y: vertical ? 1 : m.threshold, text: "threshold " + m.rule, showarrow: false, font: { size: 11, color: "#4b5563" },
                         xanchor: vertical ? "left" : "right", yanchor: vertical ? "top" : "bottom", xshift: vertical ? 4 : 0, bgcolor: "rgba(255,255,255,0.8)" });
    };
    if (twoMetrics) addThreshold(xMetric, "x");
    addThreshold(yMetric, "y");
    layout.shapes = shapes;
    layout.annotations = annotations;
    document.getElementById("scatter-title").textContent = twoMetrics
      ? "Pareto frontier: " + xMetric.name + " against " + yMetric.name
      : yMetric.name + " by trial";
    clearReason(node);
    Plotly.react(node, traces, layout, PLOT_CONFIG);
    if (!node.dataset.clicks) {
      node.dataset.clicks = "1";
      node.on("plotly_click", (event) => { const point = event.points[0]; if (point && point.customdata) select(point.customdata[0]); });
    }
  }

  /* Ticks on whole numbers only (trials, epochs), about ten at most. */
  function wholeTicks(low, high) {
    return { tickformat: ",d", tick0: low, dtick: Math.max(1, Math.ceil((high - low) / 10)) };
  }

  /* Every axis takes `automargin: true`: room for whole tick labels (22,000,000). */
  function baseLayout() {
    return { font: FONT, margin: { l: 64, r: 16, t: 24, b: 48 }, paper_bgcolor: "#fff", plot_bgcolor: "#fff",
             hovermode: "closest", uirevision: "keep", hoverlabel: { align: "left" } };
  }

  function drawSelected(data, i, config) {
    const p = data.points;
    const rows = [];
    const status = p.status[i];
    rows.push(el("h3", {}, [document.createTextNode("Trial " + p.trial[i] + " "),
                            el("span", { class: "badge status-" + status, text: status }),
                            p.frontier[i] ? el("span", { class: "badge", text: "on the frontier" }) : null]));
    const table = el("table", { class: "kv", id: "selected-assignments" });
    const add = (key, value, cls) => table.append(el("tr", {}, [el("th", { text: key }), el("td", { class: cls || null, html: value })]));
    if (p.run[i] !== null) add("run", config.runUrl ? '<a href="' + config.runUrl + p.run[i] + '">run ' + p.run[i] + "</a>" : "run " + p.run[i]);
    for (const q of data.parameters) if (p.assignments[q.name][i] !== null) add(q.name, escapeHtml(fmt(p.assignments[q.name][i])), "assignment");
    for (const m of data.metrics) {
      const value = p.values[m.name][i];
      if (value === null) continue;
      const margin = p.margins[m.name] ? p.margins[m.name][i] : null;
      const marginText = margin === null || margin === undefined ? "" :
        ' <span class="' + (margin >= 0 ? "pos" : "neg") + '">(' + (margin >= 0 ? "clears " : "misses ") + escapeHtml(m.rule) + " by " + fmt(Math.abs(margin)) + ")</span>";
      add(m.name, escapeHtml(fmt(value)) + marginText);
    }
    if (p.reason[i]) add("failure", escapeHtml(p.reason[i]));
    if (p.duration[i] !== null) add("duration", fmt(p.duration[i]) + " s");
    rows.push(table);
    document.getElementById("selected").replaceChildren(...rows);
  }

  function drawHistory(data) {
    const h = data.history;
    const node = document.getElementById("history");
    const title = h.kind === "hypervolume" ? "Hypervolume: " + (h.current || "none yet") : "Best " + h.metrics[0] + ": " + (h.current || "none yet");
    document.getElementById("history-title").textContent = title;
    const layout = baseLayout();
    layout.xaxis = { automargin: true, title: { text: "observations" }, gridcolor: COLORS.grid, zeroline: false, rangemode: "tozero" };
    layout.yaxis = { automargin: true, title: { text: h.kind === "hypervolume" ? "hypervolume" : "best " + h.metrics[0] }, gridcolor: COLORS.grid, zeroline: false };
    layout.showlegend = false;
    if (h.reference) {
      layout.annotations = [{ xref: "paper", yref: "paper", x: 1, y: 0, xanchor: "right", yanchor: "bottom", showarrow: false,
                              text: "reference point: " + escapeHtml(h.reference), font: { size: 10, color: "#6b7280" } }];
    }
    if (!h.x.length) { showReason("history", "No feasible observation yet: the " + (h.kind === "hypervolume" ? "hypervolume" : "best value") + " starts with the first completed trial that meets every threshold."); return; }
    layout.yaxis.tickformat = axisFormat(h.y);
    clearReason(node);
    Plotly.react(node, [{ type: "scatter", mode: "lines+markers", x: h.x, y: h.y, text: h.y.map((v) => fmt(v)), line: { shape: "hv", color: COLORS.feasible, width: 2 },
                          marker: { size: 5 }, hovertemplate: "after %{x} observations: %{text}<extra></extra>" }], layout, PLOT_CONFIG);
  }

  function drawParcoords(data) {
    const node = document.getElementById("parcoords");
    const p = data.points;
    let rows = [];
    for (let i = 0; i < p.status.length; i++) {
      if (p.status[i] === "failed") continue;
      if (data.parameters.some((q) => p.assignments[q.name][i] === null)) continue;
      if (data.metrics.some((m) => m.strategy !== "store" && p.values[m.name][i] === null)) continue;
      rows.push(i);
    }
    if (rows.length === 0) { Plotly.purge(node); node.replaceChildren(el("p", { class: "muted", text: "No completed observation yet." })); return; }
    if (rows.length > PARCOORDS_LINES) { const step = rows.length / PARCOORDS_LINES; rows = Array.from({ length: PARCOORDS_LINES }, (_, k) => rows[Math.floor(k * step)]); }
    const dimensions = data.parameters.map((q) => {
      if (q.type === "categorical") {
        return { label: q.name, values: rows.map((i) => q.categories.indexOf(p.assignments[q.name][i])),
                 tickvals: q.categories.map((_, k) => k), ticktext: q.categories };
      }
      if (q.log) return { label: q.name + " (log10)", values: rows.map((i) => Math.log10(p.assignments[q.name][i])) };
      const values = rows.map((i) => p.assignments[q.name][i]);
      return { label: q.name, values: values, tickformat: axisFormat(values) };
    });
    for (const m of data.metrics) {
      if (m.strategy === "store") continue;
      const values = rows.map((i) => p.values[m.name][i]);
      dimensions.push({ label: metricLabel(m), values: values, tickformat: axisFormat(values) });
    }
    const colorMetric = data.metrics.find((m) => m.name === data.optimized[0]);
    const layout = baseLayout();
    layout.margin = { l: 60, r: 60, t: 56, b: 24 };
    clearReason(node);
    Plotly.react(node, [{ type: "parcoords", dimensions: dimensions,
                          line: { color: rows.map((i) => p.values[colorMetric.name][i]), colorscale: "Viridis",
                                  reversescale: colorMetric.objective === "minimize", showscale: true,
                                  colorbar: { title: { text: colorMetric.name }, thickness: 12 } } }], layout, PLOT_CONFIG);
  }

  function drawImportance(list) {
    const node = document.getElementById("importance");
    const usable = list.filter((m) => m.importances);
    if (!usable.length) {
      Plotly.purge(node);
      node.replaceChildren(...list.map((m) => el("p", { class: "muted", text: m.metric + ": " + m.reason })));
      return;
    }
    const names = Object.keys(usable[0].importances);
    const order = names.slice().sort((a, b) => usable[0].importances[a] - usable[0].importances[b]);
    const traces = usable.map((m, k) => ({ type: "bar", orientation: "h", name: m.metric, y: order, x: order.map((n) => m.importances[n]),
                                           marker: { color: k === 0 ? COLORS.feasible : "#10b981" },
                                           hovertemplate: m.metric + " · %{y}: %{x:.1%}<extra></extra>" }));
    const layout = baseLayout();
    layout.barmode = "group";
    layout.margin.l = 110;
    layout.xaxis = { automargin: true, title: { text: "importance (share, by permutation)" }, tickformat: ".0%", gridcolor: COLORS.grid, rangemode: "tozero" };
    layout.legend = { orientation: "h", y: 1.1, x: 0 };
    clearReason(node);
    Plotly.react(node, traces, layout, PLOT_CONFIG);
    node.dataset.metrics = usable.map((m) => m.metric).join(",");
  }

  function drawThresholds(data) {
    const node = document.getElementById("thresholds");
    if (!data.thresholds.length) { node.replaceChildren(el("p", { class: "muted", text: "No metric has a threshold: every completed observation is feasible." })); return; }
    const head = ["metric", "threshold", "kind", "met", "missed", "best value", "best margin", "median margin"];
    const table = el("table", { class: "grid", id: "threshold-table" }, [
      el("thead", {}, el("tr", {}, head.map((h, k) => el("th", { class: k >= 3 ? "num" : null, text: h })))),
      el("tbody", {}, data.thresholds.map((t) => el("tr", {}, [
        el("td", { text: t.metric }), el("td", { text: t.rule }), el("td", { text: t.strategy === "optimize" ? "region of interest" : "constraint" }),
        el("td", { class: "num", text: fmt(t.met) }), el("td", { class: "num", text: fmt(t.violated) }),
        el("td", { class: "num", text: t.best_value }), el("td", { class: "num", text: t.best_margin }), el("td", { class: "num", text: t.median_margin }),
      ]))),
    ]);
    node.replaceChildren(table, el("p", { class: "muted", text: "A margin is how far a value clears (positive) or misses (negative) its threshold, in the metric's units. The trials table has each observation's margins." }));
  }

  /* ------------------------------------------------------------------ the trials table */
  /* The column groups a person can fold: folded, the parameters share one wrapped column and the
     stored metrics and margins are hidden, so the table fits its box; unfolded, the box scrolls
     sideways (never the page). */
  const GROUPS = [
    { key: "parameters", show: "parameters as columns", hide: "parameters in one column" },
    { key: "stored", show: "stored metrics", hide: "hide stored metrics" },
    { key: "margins", show: "threshold margins", hide: "hide margins" },
  ];

  function trialColumns(data, shown) {
    const p = data.points;
    const columns = [
      { key: "trial", label: "trial", get: (i) => p.trial[i], num: true },
      { key: "status", label: "status", get: (i) => p.status[i] + (p.frontier[i] ? " (frontier)" : "") },
    ];
    for (const m of data.metrics) {
      if (m.strategy !== "store" || shown.stored) columns.push({ key: "v:" + m.name, label: m.name, get: (i) => p.values[m.name][i], num: true });
    }
    if (shown.margins) for (const m of data.metrics) if (p.margins[m.name]) columns.push({ key: "g:" + m.name, label: m.name + " margin", get: (i) => p.margins[m.name][i], num: true, margin: true });
    if (shown.parameters) {
      for (const q of data.parameters) columns.push({ key: "a:" + q.name, label: q.name, get: (i) => p.assignments[q.name][i], num: q.type !== "categorical" });
    } else {
      columns.push({ key: "parameters", label: "parameters", wrap: true,
                     get: (i) => data.parameters.filter((q) => p.assignments[q.name][i] !== null)
                                                .map((q) => q.name + "=" + fmt(p.assignments[q.name][i])).join("  ") });
    }
    columns.push({ key: "duration", label: "duration (s)", get: (i) => p.duration[i], num: true });
    columns.push({ key: "reason", label: "failure", get: (i) => p.reason[i] });
    columns.push({ key: "run", label: "run", get: (i) => p.run[i], num: true, run: true });
    return columns;
  }

  function drawTrials(data, state, select) {
    const node = document.getElementById("trials");
    const columns = trialColumns(data, state.shown);
    const total = data.points.status.length;
    const needle = state.filter.trim().toLowerCase();
    if (needle && !state.rowText) {  // built on the first filter, not on every draw; every column, folded or not
      const all = trialColumns(data, { parameters: true, stored: true, margins: true });
      state.rowText = new Array(total);
      for (let i = 0; i < total; i++) state.rowText[i] = all.map((c) => fmt(c.get(i))).join(" ").toLowerCase();
    }
    let rows = [];
    for (let i = 0; i < total; i++) {
      const status = data.points.status[i];
      if (state.status === "frontier" ? !data.points.frontier[i] : state.status !== "all" && status !== state.status) continue;
      if (needle && state.rowText[i].indexOf(needle) < 0) continue;
      rows.push(i);
    }
    const column = columns.find((c) => c.key === state.sort.key) || columns[0];
    rows.sort((a, b) => {
      const x = column.get(a), y = column.get(b);
      if (x === y) return a - b;
      if (x === null) return 1;
      if (y === null) return -1;
      return (x < y ? -1 : 1) * state.sort.dir;
    });
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
    state.page = Math.min(state.page, pages - 1);
    const shown = rows.slice(state.page * PAGE_ROWS, (state.page + 1) * PAGE_ROWS);
    const redraw = () => drawTrials(data, state, select);

    const filter = el("input", { type: "search", id: "trial-filter", placeholder: "filter: any value, e.g. adamw or out_of_memory", value: state.filter });
    filter.addEventListener("input", debounce(() => { state.filter = filter.value; state.page = 0; redraw(); document.getElementById("trial-filter").focus(); }, 200));
    const status = el("select", { id: "trial-status" }, ["all", "feasible", "infeasible", "stopped", "failed", "frontier"].map((s) => el("option", { value: s, text: s, selected: s === state.status ? "selected" : null })));
    status.addEventListener("change", () => { state.status = status.value; state.page = 0; redraw(); });
    const tools = el("div", { class: "tools" }, [filter, status,
      el("span", { class: "muted", id: "trial-count", text: rows.length ? "rows " + fmt(state.page * PAGE_ROWS + 1) + "–" + fmt(state.page * PAGE_ROWS + shown.length) + " of " + fmt(rows.length) + (rows.length !== total ? " (" + fmt(total) + " in all)" : "") : "no trial matches" }),
      el("button", { text: "‹ previous", disabled: state.page === 0 ? "disabled" : null, onclick: () => { state.page -= 1; redraw(); } }),
      el("button", { text: "next ›", disabled: state.page >= pages - 1 ? "disabled" : null, onclick: () => { state.page += 1; redraw(); } }),
      ...GROUPS.map((g) => el("button", { class: "fold" + (state.shown[g.key] ? " unfolded" : ""), "data-group": g.key,
                                          text: (state.shown[g.key] ? "− " + g.hide : "+ " + g.show),
                                          onclick: () => { state.shown[g.key] = !state.shown[g.key]; redraw(); } }))]);
    if (!columns.some((c) => c.key === state.sort.key)) state.sort = { key: "trial", dir: 1 };
    const head = el("tr", {}, columns.map((c) => el("th", {
      class: "sortable" + (c.num ? " num" : "") + (c.key === state.sort.key ? (state.sort.dir > 0 ? " sorted-asc" : " sorted-desc") : ""),
      "data-key": c.key,
      onclick: () => { state.sort = { key: c.key, dir: state.sort.key === c.key ? -state.sort.dir : 1 }; redraw(); } },
      wrappable(c.label))));
    const body = el("tbody", {}, shown.map((i) => el("tr", { "data-observation": data.points.observation[i], class: data.points.observation[i] === state.selected ? "highlight" : null,
      onclick: () => { state.selected = data.points.observation[i]; select(i); redraw(); } },
      columns.map((c) => {
        const value = c.get(i);
        if (c.key === "status") return el("td", {}, el("span", { class: "badge status-" + data.points.status[i], text: value }));
        if (c.run && value !== null && window.paretune.runUrl) return el("td", { class: "num" }, el("a", { href: window.paretune.runUrl + value, text: String(value) }));
        if (c.key === "reason") return el("td", { class: "reason", title: value || null, text: value || "" });
        if (c.wrap) return el("td", { class: "wrap", text: value });
        return el("td", { class: (c.num ? "num" : "") + (c.margin && value !== null ? (value >= 0 ? " pos" : " neg") : ""), text: fmt(value) });
      }))));
    node.replaceChildren(tools, el("div", { class: "scroll" }, el("table", { class: "grid", id: "trials-table" }, [el("thead", {}, head), body])));
  }

  /* A header that may wrap after each underscore (HasAns_<wbr>exact), not inside a word. */
  function wrappable(label) {
    const parts = label.split("_");
    return parts.flatMap((part, k) => (k < parts.length - 1 ? [part + "_", el("wbr")] : [part]));
  }

  function debounce(action, ms) { let t = null; return () => { clearTimeout(t); t = setTimeout(action, ms); }; }

  /* ---------------------------------------------------------------------- other pages */
  function runPage(run) {
    const node = document.getElementById("checkpoints");
    const names = Object.keys(run.checkpoints.values);
    if (!names.length) { node.replaceChildren(el("p", { class: "muted", text: "This run reported no checkpoints." })); return; }
    if (run.checkpoints.epoch.length === 1) {
      node.append(el("p", { class: "muted reason-text", text: "One checkpoint" + (run.status === "running" ? " so far" : "") + " (epoch " + run.checkpoints.epoch[0] + "): a curve needs two." }));
    }
    for (const name of names) {
      const chart = el("div", { "data-metric": name });
      node.append(chart);
      const layout = baseLayout();
      layout.title = { text: name, font: { size: 13 }, x: 0.02 };
      layout.margin = { l: 56, r: 12, t: 32, b: 40 };
      const values = run.checkpoints.values[name];
      const epochs = run.checkpoints.epoch;
      layout.xaxis = Object.assign({ automargin: true, title: { text: "epoch" }, gridcolor: COLORS.grid, zeroline: false },
                                   wholeTicks(epochs[0], epochs[epochs.length - 1]));
      layout.yaxis = { automargin: true, gridcolor: COLORS.grid, zeroline: false, tickformat: axisFormat(values) };
      if (run.stop && run.stop.epoch !== null) stopLine(layout, run.stop, run.status);
      Plotly.newPlot(chart, [{ type: "scatter", mode: "lines+markers", x: run.checkpoints.epoch, y: values, connectgaps: true,
                               text: values.map((v) => fmt(v)), line: { color: COLORS.feasible, width: 2 },
                               hovertemplate: "epoch %{x}: %{text}<extra></extra>" }], layout, PLOT_CONFIG);
    }
  }

  /* Where the trial was told to stop: a dotted vertical line at that epoch, labelled (the reason is the text above;
     a trial that trained on to the end, e.g. told at max_checkpoints, is "told to stop", not "stopped"). */
  function stopLine(layout, stop, status) {
    const label = status === "stopped" ? "stopped" + (stop.rung ? " (rung " + stop.rung + ")" : "") : "told to stop";
    layout.shapes = [{ type: "line", xref: "x", yref: "paper", x0: stop.epoch, x1: stop.epoch, y0: 0, y1: 1,
                       line: { color: COLORS.stopped, width: 2, dash: "dot" } }];
    layout.annotations = [{ xref: "x", yref: "paper", x: stop.epoch, y: 1, yanchor: "bottom", showarrow: false,
                            text: label, font: { size: 11, color: COLORS.stopped } }];
  }

  function watchExperiments(url, ms) {
    let seen = null;
    const signature = (list) => JSON.stringify(list.map((s) => [s.id, s.observations, s.open, s.state]));
    const check = async () => {
      try {
        const response = await fetch(url, { cache: "no-store" });
        if (!response.ok) return;
        const now = signature(await response.json());
        if (seen !== null && now !== seen) location.reload();
        seen = now;
      } catch (error) { /* the next poll tries again */ }
    };
    check();
    setInterval(check, ms);
  }

  window.paretune = { fmt: fmt, experimentPage: function (config) { window.paretune.runUrl = config.runUrl; experimentPage(config); },
                      runPage: runPage, watchExperiments: watchExperiments };
})();
