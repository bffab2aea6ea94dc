// The prompt-URL builder: draw through the REST API, then show the prompt URL that gives the
// same image (the job's own seed, signed by the server when it requires signatures).
"use strict";
(function () {
  const root = document.getElementById("builder");
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "imagine.apiToken";
  const POLL_MS = 400;
  const needsToken = root.dataset.token === "required";
  const signing = root.dataset.signing; // "none" | "on" | "off"
  const status = $("status");
  let busy = false;

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

  function askToken(message) {
    $("token-form").hidden = false;
    say(message, true);
    $("token").focus();
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token()) headers["Authorization"] = "Bearer " + token();
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const text = (data && data.error) || ("The server answered " + response.status + ".");
      throw new ApiError(response.status, text);
    }
    return data;
  }

  // The prompt text with the chosen options as the grammar's flags; --no goes last because
  // it takes the rest of the text.
  function promptText(seed) {
    const parts = [$("prompt").value.replace(/\s+/g, " ").trim()];
    if ($("ar").value) parts.push("--ar " + $("ar").value);
    if ($("steps").value) parts.push("--steps " + $("steps").value);
    if (seed !== null && seed !== undefined && seed !== "") parts.push("--seed " + seed);
    if ($("model").value) parts.push("--model " + $("model").value);
    const negative = $("negative").value.replace(/\s+/g, " ").trim();
    if (negative) parts.push("--no " + negative);
    return parts.join(" ");
  }

  async function loadModels() {
    try {
      const listing = await api("GET", "/api/v1/models");
      const select = $("model");
      for (const model of listing.models || []) {
        if (model.name === "default") continue; // "Server default" already says it
        const option = document.createElement("option");
        option.value = model.name;
        option.textContent = model.description ? model.name + " — " + model.description
                                                : model.name;
        select.appendChild(option);
      }
    } catch (error) {
      if (error.status === 401) askToken("Enter the API token to use this page.");
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // A preview needs the API token when the server has one: an <img> cannot send it, so the
  // JPEG is fetched and shown from a blob URL (the page's policy allows blob: images).
  let previewBlob = null;
  async function showPreview(url) {
    try {
      const headers = token() ? { "Authorization": "Bearer " + token() } : {};
      // Same origin whatever IMAGINE_PUBLIC_URL says (the policy allows connections to it).
      const where = new URL(url, location.href);
      const response = await fetch(where.pathname + where.search, { headers, cache: "no-store" });
      if (!response.ok) return; // finished in between: the result comes next
      const blob = URL.createObjectURL(await response.blob());
      if (previewBlob) URL.revokeObjectURL(previewBlob);
      previewBlob = blob;
      $("result").hidden = false;
      $("image").dataset.shows = url;
      $("image").src = blob;
      $("image").alt = "Preview of the image being drawn";
    } catch (error) { /* a missed preview is not an error: the next poll brings another */ }
  }

  async function follow(job) {
    let shown = null;
    for (;;) {
      if (job.status === "done") return job;
      if (["failed", "cancelled", "expired"].includes(job.status)) {
        throw new ApiError(0, "The image could not be drawn: " + (job.error || job.status));
      }
      if (job.status === "queued") {
        say(job.position ? "Queued: place " + job.position + "…" : "Queued…");
      } else {
        const step = job.total_steps ? " (step " + job.step + " of " + job.total_steps + ")" : "";
        say("Drawing" + step + "…");
      }
      if (job.preview_url && job.preview_url !== shown) {
        shown = job.preview_url;
        await showPreview(shown); // awaited: a late preview never covers the result
      }
      await sleep(POLL_MS);
      job = await api("GET", "/api/v1/jobs/" + encodeURIComponent(job.id));
    }
  }

  function escapeHtml(text) {
    return text.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;")
               .replace(/>/g, "&gt;");
  }

  async function share(prompt, seed) {
    if (signing === "off") {
      $("share").hidden = true;
      return "Done. No prompt URL: signing is off on this server (no API token configured).";
    }
    const signed = await api("POST", "/api/v1/sign", { prompt: promptText(seed) });
    const alt = prompt.replace(/[\[\]\n]/g, " ");
    $("url").value = signed.url;
    $("markdown").value = "![" + alt + "](" + signed.url + ")";
    $("html").value = '<img src="' + escapeHtml(signed.url) + '" alt="' + escapeHtml(alt) + '">';
    $("share").hidden = false;
    return "Done" + (signed.signed ? " (signed URL)" : "") +
           ": copy the prompt URL below; it gives this same image.";
  }

  async function generate(event) {
    event.preventDefault();
    if (busy) return;
    if (needsToken && !token()) { askToken("Enter the API token first."); return; }
    const prompt = $("prompt").value.trim();
    if (!prompt) { say("Write a prompt first.", true); $("prompt").focus(); return; }
    busy = true;
    $("generate").disabled = true;
    $("share").hidden = true;
    say("Sending…");
    try {
      const seed = $("seed").value;
      let job = await api("POST", "/api/v1/jobs", { prompt: promptText(seed) });
      job = await follow(job);
      const image = job.images[0];
      $("result").hidden = false;
      $("image").dataset.shows = image.url;
      $("image").src = image.url;
      $("image").alt = prompt;
      say(await share(prompt, image.seed));
    } catch (error) {
      if (error.status === 401) askToken("The API token was refused: enter it again.");
      else say(error.message, true);
    } finally {
      busy = false;
      $("generate").disabled = false;
    }
  }

  async function copy(event) {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const field = $(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(field.value);
    } catch (error) { // no clipboard permission (an http page, a headless browser)
      field.select();
      document.execCommand("copy");
    }
    say("Copied the " + button.textContent.replace(/^Copy /, "") + ".");
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token-form").hidden = true;
    say("Token saved in this browser.");
    loadModels();
    $("prompt").focus();
  });
  $("form").addEventListener("submit", generate);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("form").requestSubmit();
    }
  });
  $("share").addEventListener("click", copy);
  if (needsToken && !token()) askToken("This server needs its API token: enter it once.");
  else loadModels();
})();
