// The kiosk page: decisions arrive by Server-Sent Events (/events), the live view is an MJPEG
// stream (/stream.mjpg). Nothing is polled, nothing is stored (no cookies, no storage, no
// frames kept). window.kiosk exposes what the tests and the benchmark read.
"use strict";
(() => {
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const $ = (id) => document.getElementById(id);
  const CARDS = ["waiting", "retake", "refer", "clear", "unsure"];
  const FLAGGED = ["refer", "unsure"];
  let strings = boot.strings;
  let lang = boot.lang;
  let msg = null; // the last message from /events
  let shown = ""; // what the card shows now: state + hint + language
  let heatOn = false;
  let heatSeq = -1;
  let heatAt = 0;
  const latencies = []; // ms from the pipeline's decision to the frame after it was rendered
  const api = { latencies, renders: 0, messages: 0, lang: () => lang, state: () => state() };
  window.kiosk = api;

  const t = (key) => strings[key] ?? key;

  function state() {
    const d = msg && msg.decision;
    if (!d) return "waiting";
    return CARDS.includes(d.label) ? d.label : "unsure"; // a decision this page does not know: "we cannot tell"
  }

  function renderCard() {
    const s = state();
    const hint = s === "retake" ? msg.decision.hint || "generic" : "";
    const key = `${s}|${hint}|${lang}`;
    if (key !== shown) {
      shown = key;
      const card = $("card");
      card.className = `card state-${s}`;
      card.dataset.state = s;
      $("card-icon").setAttribute("href", `#i-${s}`);
      $("card-title").textContent = t(`${s}.title`);
      $("card-hint").hidden = !hint;
      $("card-hint").textContent = hint ? t(`retake.hint.${hint}`) : "";
      $("card-body").textContent = t(`${s}.body`);
      api.renders += 1;
    }
    const offered = boot.heatmap && FLAGGED.includes(s) && !!(msg && msg.heatmap);
    $("heat-toggle").hidden = !offered;
    if (!offered && heatOn) setHeat(false);
    if (heatOn && msg && msg.seq !== heatSeq && performance.now() - heatAt > 1000) loadHeat();
    $("nocam").hidden = !(msg && msg.camera === "unavailable");
  }

  function loadHeat() {
    heatSeq = msg ? msg.seq : -1;
    heatAt = performance.now();
    $("heat").src = `/heatmap.jpg?seq=${heatSeq}`;
  }

  function setHeat(on) {
    heatOn = on;
    $("heat-toggle").setAttribute("aria-pressed", String(on));
    $("heat-label").textContent = t(on ? "heatmap.hide" : "heatmap.show");
    $("heat").hidden = !on;
    $("legend").hidden = !on;
    if (on) loadHeat();
    else $("heat").removeAttribute("src");
  }

  function onMessage(m) {
    api.messages += 1;
    const fresh = !msg || m.seq !== msg.seq;
    msg = m;
    renderCard();
    if (fresh && m.t_ms) {
      // rAF runs before the next paint; the timeout after it runs once that frame is painted
      requestAnimationFrame(() =>
        setTimeout(() => {
          latencies.push(performance.timeOrigin + performance.now() - m.t_ms);
          if (latencies.length > 1000) latencies.shift();
        }, 0),
      );
    }
  }

  function applyStrings() {
    document.documentElement.lang = lang;
    document.title = `${t("title")} · mpox-edge`;
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-alt]")) el.alt = t(el.dataset.i18nAlt);
    $("langs").setAttribute("aria-label", t("languages"));
    $("heat-label").textContent = t(heatOn ? "heatmap.hide" : "heatmap.show");
    for (const b of $("langs").children) b.setAttribute("aria-pressed", String(b.value === lang));
    renderCard();
  }

  async function setLanguage(code) {
    if (!boot.languages.includes(code) || code === lang) return;
    const r = await fetch(`/static/i18n/${code}.json`, { cache: "no-store" });
    if (!r.ok) return;
    const en = code === "en" ? {} : boot.fallback || {};
    strings = { ...en, ...(await r.json()) };
    lang = code;
    const url = new URL(location.href);
    url.searchParams.set("lang", code);
    history.replaceState(null, "", url);
    applyStrings();
  }
  api.setLanguage = setLanguage;

  function languageButtons() {
    for (const code of boot.languages) {
      const b = document.createElement("button");
      b.type = "button";
      b.value = code;
      b.textContent = code.toUpperCase();
      b.setAttribute("aria-pressed", String(code === lang));
      b.addEventListener("click", () => setLanguage(code));
      $("langs").append(b);
    }
  }

  function connect() {
    const es = new EventSource("/events");
    es.onopen = () => { $("conn").hidden = true; };
    es.onmessage = (e) => onMessage(JSON.parse(e.data));
    es.onerror = () => { $("conn").hidden = false; }; // EventSource reconnects by itself
  }

  function startLive() {
    if (!boot.stream) return;
    const live = $("live");
    live.onerror = () => setTimeout(() => { live.src = `/stream.mjpg?t=${Date.now()}`; }, 2000);
    live.src = "/stream.mjpg";
  }

  languageButtons();
  $("heat-toggle").addEventListener("click", () => setHeat(!heatOn));
  connect();
  // an MJPEG image never finishes loading: started after the load event, it does not hold it up
  if (document.readyState === "complete") startLive();
  else window.addEventListener("load", startLive);
})();
