"use strict";
// guardmatch review page: plain JS, no dependencies. Text goes into the DOM with textContent only.
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { item: null, history: [], busy: false, seen: [] };

  function reviewer() { return $("reviewer").value.trim(); }

  function message(text, kind) {
    const m = $("message");
    m.textContent = text || "";
    m.className = kind || "";
  }

  async function api(path, options) {
    const res = await fetch(path, options);
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) {
      const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : res.statusText;
      throw new Error(detail);
    }
    return body;
  }

  function showProgress(p) {
    if (!p) return;
    const done = p.labeled + p.conflicts;
    const pct = p.total ? Math.round((100 * done) / p.total) : 100;
    $("progress-bar").style.width = pct + "%";
    let text = `${p.labeled} of ${p.total} labeled`;
    if (p.conflicts) text += ` · ${p.conflicts} in conflict`;
    if (p.skipped !== undefined) text += ` · ${p.skipped} skipped by you`;
    if (p.remaining !== undefined) text += ` · ${p.remaining} remaining`;
    $("progress").textContent = text;
  }

  function render(item) {
    state.item = item;
    if (!item) {
      $("card").hidden = true;
      $("done").hidden = false;
      return;
    }
    $("done").hidden = true;
    $("card").hidden = false;
    $("item-id").textContent = item.item_id;
    $("position").textContent = item.position ? `item ${item.position} of ${item.total} in the queue` : "";
    $("prompt").textContent = item.prompt;
    const hasResponse = item.response !== null && item.response !== undefined && item.response !== "";
    $("response-box").hidden = !hasResponse;
    $("response").textContent = hasResponse ? item.response : "";
    if (item.p_harmful === null || item.p_harmful === undefined) {
      $("predicted").textContent = "no prediction";
      $("score").textContent = "–";
      $("score-bar").style.width = "0";
    } else {
      $("predicted").textContent = item.predicted;
      $("score").textContent = item.p_harmful.toFixed(3);
      $("score-bar").style.width = Math.round(item.p_harmful * 100) + "%";
    }
    $("model-version").textContent = item.model_version || "";
    const mine = (item.reviews || []).filter((r) => r.reviewer === reviewer());
    const last = mine.length ? mine[mine.length - 1] : null;
    $("current").textContent = last ? `your decision so far: ${last.action === "skip" ? "skip" : last.label} (press a key to change it)` : "";
    $("note").value = "";
  }

  async function loadNext() {
    if (!reviewer()) { message("enter your reviewer name first", "error"); $("reviewer").focus(); return; }
    const q = new URLSearchParams({ reviewer: reviewer(), exclude: state.seen.join(",") });
    const body = await api("/api/next?" + q.toString());
    showProgress(body.progress);
    render(body.item);
  }

  function setBusy(b) {
    state.busy = b;
    document.querySelectorAll(".buttons button").forEach((btn) => { btn.disabled = b; });
  }

  async function decide(label) {
    if (state.busy || !state.item) return;
    if (!reviewer()) { message("enter your reviewer name first", "error"); $("reviewer").focus(); return; }
    setBusy(true);
    const item = state.item;
    try {
      const body = await api("/api/review", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ item_id: item.item_id, label: label, reviewer: reviewer(), note: $("note").value || null }),
      });
      const o = body.outcome;
      if (o.conflict) {
        const votes = Object.entries(o.conflict.votes).map(([who, l]) => `${who}: ${l}`).join(", ");
        message(`saved; conflict on ${item.item_id} (${votes}): it needs a resolution`, "conflict");
      } else {
        message(`saved ${item.item_id}: ${label}`, "");
      }
      state.history.push(item.item_id);
      if (label === "skip" && state.seen.indexOf(item.item_id) < 0) state.seen.push(item.item_id);
      showProgress(body.progress);
      await loadNext();
    } catch (e) {
      message("not saved: " + e.message, "error");
    } finally {
      setBusy(false);
    }
  }

  async function back() {
    if (state.busy || !state.history.length) { message("nothing to go back to", ""); return; }
    const id = state.history.pop();
    try {
      const body = await api("/api/item/" + encodeURIComponent(id));
      render(body.item);
      message(`back to ${id}: decide again to correct it`, "");
    } catch (e) {
      message(e.message, "error");
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    document.querySelectorAll(".buttons button[data-label]").forEach((btn) => {
      btn.addEventListener("click", () => decide(btn.dataset.label));
    });
    $("btn-back").addEventListener("click", back);
    document.addEventListener("keydown", (ev) => {
      const tag = (ev.target && ev.target.tagName) || "";
      if (tag === "INPUT" || tag === "TEXTAREA" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const key = ev.key.toLowerCase();
      if (key === "h") decide("harmful");
      else if (key === "u") decide("unharmful");
      else if (key === "s") decide("skip");
      else if (key === "b" || key === "backspace") { ev.preventDefault(); back(); }
    });
    $("reviewer").addEventListener("change", () => {
      localStorage.setItem("guardmatch-reviewer", reviewer());
      state.seen = [];
      loadNext().catch((e) => message(e.message, "error"));
    });
    try {
      const status = await api("/api/status");
      $("db").textContent = `· ${status.db} · ${status.task} task`;
      $("reviewer").value = localStorage.getItem("guardmatch-reviewer") || status.default_reviewer || "";
      showProgress(status.progress);
      await loadNext();
    } catch (e) {
      message(e.message, "error");
    }
  });
})();
