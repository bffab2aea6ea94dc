// The Vary (Region) mask editor: paint on a canvas laid over the image, send the mask.
// The canvas has the image's real size and is scaled to the screen by CSS, so strokes are
// mapped from screen to image pixels and the exported mask needs no resampling.
"use strict";

(function () {
  const editor = document.getElementById("editor");
  const canvas = document.getElementById("mask");
  const ctx = canvas.getContext("2d");
  const size = document.getElementById("size");
  const undoButton = document.getElementById("undo");
  const status = document.getElementById("status");
  const form = document.getElementById("form");
  const submitButton = document.getElementById("submit");
  const width = Number(editor.dataset.width);
  const height = Number(editor.dataset.height);
  const PAINT = "rgb(255, 0, 200)"; // shown half-transparent by CSS; exported as white
  // Undo keeps whole snapshots: at most ~64 MB of them (3 of a 2048² image), so a phone
  // does not run out of memory on a large image.
  const MAX_UNDO = Math.max(3, Math.min(30, Math.floor(64e6 / (width * height * 4))));
  const undoStack = [];
  let erasing = false;
  let stroke = null; // {id, x, y} while a pointer paints

  // As wide as the screen allows, but short enough to leave the tools in view.
  const stage = document.getElementById("stage");
  stage.style.aspectRatio = width + " / " + height;
  stage.style.width = "min(100%, calc(70vh * " + (width / height).toFixed(4) + "))";
  const shorter = Math.min(width, height);
  size.max = String(Math.max(2, Math.round(Math.max(width, height) / 4)));
  size.value = String(Math.max(2, Math.round(shorter / 10)));

  function say(text, kind) {
    status.textContent = text;
    status.className = "message" + (kind ? " " + kind : "");
    status.scrollIntoView({ block: "nearest" });
  }

  function chooseTool(eraser) {
    erasing = eraser;
    document.getElementById("brush").setAttribute("aria-pressed", String(!eraser));
    document.getElementById("eraser").setAttribute("aria-pressed", String(eraser));
  }

  function remember() {
    undoStack.push(ctx.getImageData(0, 0, width, height));
    if (undoStack.length > MAX_UNDO) undoStack.shift();
    undoButton.disabled = false;
  }

  function toImage(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: (event.clientX - box.left) * (width / box.width),
      y: (event.clientY - box.top) * (height / box.height),
    };
  }

  function line(from, to) {
    ctx.globalCompositeOperation = erasing ? "destination-out" : "source-over";
    ctx.strokeStyle = PAINT;
    ctx.lineWidth = Number(size.value);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    if (from.x === to.x && from.y === to.y) {
      // A tap: canvas drops zero-length lines before stroking, so draw the dot itself.
      ctx.fillStyle = PAINT;
      ctx.arc(to.x, to.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
  }

  canvas.addEventListener("pointerdown", function (event) {
    if (stroke !== null || event.button > 0) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    remember();
    const at = toImage(event);
    stroke = { id: event.pointerId, x: at.x, y: at.y };
    line(at, at); // a tap paints a dot
  });
  canvas.addEventListener("pointermove", function (event) {
    if (stroke === null || event.pointerId !== stroke.id) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const each of events.length ? events : [event]) {
      const at = toImage(each);
      line(stroke, at);
      stroke.x = at.x;
      stroke.y = at.y;
    }
  });
  function endStroke(event) {
    if (stroke !== null && event.pointerId === stroke.id) stroke = null;
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  canvas.addEventListener("lostpointercapture", endStroke);

  document.getElementById("brush").addEventListener("click", function () { chooseTool(false); });
  document.getElementById("eraser").addEventListener("click", function () { chooseTool(true); });
  undoButton.addEventListener("click", function () {
    const previous = undoStack.pop();
    if (previous) ctx.putImageData(previous, 0, 0);
    undoButton.disabled = undoStack.length === 0;
  });
  document.getElementById("clear").addEventListener("click", function () {
    remember();
    ctx.clearRect(0, 0, width, height);
  });

  function painted() {
    const pixels = ctx.getImageData(0, 0, width, height).data;
    for (let i = 3; i < pixels.length; i += 4) {
      if (pixels[i] >= 128) return true;
    }
    return false;
  }

  // White where painted, black elsewhere, at the image's own size.
  function maskDataUrl() {
    const out = document.createElement("canvas");
    out.width = width;
    out.height = height;
    const o = out.getContext("2d");
    o.drawImage(canvas, 0, 0);
    o.globalCompositeOperation = "source-in";
    o.fillStyle = "#fff";
    o.fillRect(0, 0, width, height);
    o.globalCompositeOperation = "destination-over";
    o.fillStyle = "#000";
    o.fillRect(0, 0, width, height);
    return out.toDataURL("image/png");
  }

  function finished(answer) {
    form.querySelectorAll("textarea, button").forEach(function (el) { el.disabled = true; });
    document.querySelectorAll(".tools button, .tools input").forEach(function (el) {
      el.disabled = true;
    });
    say(answer.message, "done");
    if (editor.dataset.api === "true" && answer.status_url) {
      const link = document.createElement("a");
      link.href = answer.status_url;
      link.textContent = "Follow the job (JSON)";
      link.id = "job-link";
      status.append(" ", link);
    }
  }

  async function send(event) {
    event.preventDefault();
    if (!painted()) {
      say("Paint over the part of the image to redraw first.", "error");
      return;
    }
    submitButton.disabled = true;
    say("Sending…");
    try {
      const response = await fetch(window.location.href, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ mask: maskDataUrl(), prompt: document.getElementById("prompt").value }),
        credentials: "omit",
        cache: "no-store",
      });
      const text = await response.text();
      let answer;
      try { answer = JSON.parse(text); } catch (_) { answer = { error: text.trim() }; }
      if (response.status === 202) return finished(answer);
      say(answer.error || "The server answered " + response.status + ".", "error");
      if (response.status === 410) {
        form.querySelectorAll("textarea, button").forEach(function (el) { el.disabled = true; });
        return;
      }
    } catch (error) {
      say("Could not reach the server (" + error.message + "); try again.", "error");
    }
    submitButton.disabled = false;
  }
  form.addEventListener("submit", send);
})();
