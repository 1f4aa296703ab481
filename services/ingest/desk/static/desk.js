/* The desk's enhancements. Every page works without this script; with it:
   - the body is written in a rich editor whose pasted text (Word, Google Docs) keeps paragraphs,
     headings, bold, italic, lists, links and tables, and drops the rest (the server sanitizes
     again whatever arrives);
   - photos are chosen several at once or dragged in, previewed at once, captioned, given a
     role, reordered and placed in the body; the form uploads with a progress bar, and a refused
     photo or field says why beside it without losing anything typed;
   - an article's page follows its status until it settles.
   Served by bantin itself: no other host is ever asked for anything. */
(function () {
  "use strict";

  var ROLES = { inline: "Trong bài", cover: "Ảnh đại diện", gallery: "Thư viện ảnh" };
  var ACCEPTED = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/avif", "image/heic", "image/heif"];

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { node.appendChild(child); });
    return node;
  }

  /* --- the paste cleaner ---------------------------------------------------------------- */

  var KEEP = { P: "p", H1: "h2", H2: "h2", H3: "h3", H4: "h4", H5: "h4", H6: "h4", STRONG: "strong",
    B: "strong", EM: "em", I: "em", U: null, UL: "ul", OL: "ol", LI: "li", A: "a", TABLE: "table",
    THEAD: "thead", TBODY: "tbody", TR: "tr", TD: "td", TH: "th", BR: "br", BLOCKQUOTE: "blockquote",
    IMG: "img", FIGURE: null, DIV: "p" };
  var DROP = { SCRIPT: 1, STYLE: 1, META: 1, LINK: 1, TITLE: 1, HEAD: 1, OBJECT: 1, IFRAME: 1,
    SVG: 1, MATH: 1, XML: 1, TEMPLATE: 1, NOSCRIPT: 1, BUTTON: 1, INPUT: 1, SELECT: 1, TEXTAREA: 1 };

  /* Copy the nodes worth keeping from `source` into `target` (a node of the live document). */
  function cleanInto(source, target) {
    Array.prototype.forEach.call(source.childNodes, function (node) {
      if (node.nodeType === 3) {
        target.appendChild(document.createTextNode(node.nodeValue.replace(/\u00a0/g, " ")));
        return;
      }
      if (node.nodeType !== 1) return;  // comments, Word's conditional blocks
      var name = node.nodeName.toUpperCase().replace(/^O:|^W:|^V:/, "");
      if (DROP[name] || node.nodeName.indexOf(":") > 0) return;
      var style = (node.getAttribute("data-pasted-style") || "").toLowerCase();
      var tag = KEEP.hasOwnProperty(name) ? KEEP[name] : null;
      // Google Docs wraps a whole paste in <b style="font-weight:normal">; its bold and italic
      // are spans with a style.
      if (tag === "strong" && /font-weight:\s*(normal|400)/.test(style)) tag = null;
      if (!tag && name === "SPAN") {
        var bold = /font-weight:\s*(bold|[6-9]00)/.test(style);
        var italic = /font-style:\s*italic/.test(style);
        if (bold || italic) {
          var outer = el(bold ? "strong" : "em");
          var inner = bold && italic ? outer.appendChild(el("em")) : outer;
          cleanInto(node, inner);
          target.appendChild(outer);
          return;
        }
      }
      if (!tag) { cleanInto(node, target); return; }
      if (tag === "img") {
        // Only our own inline photos stay; pictures pasted from elsewhere are added as photos.
        var src = node.getAttribute("src") || "";
        var cid = node.getAttribute("data-cid") || (/^cid:/.test(src) ? src.slice(4) : "");
        if (/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(cid)) target.appendChild(inlineImage(cid, node.getAttribute("alt")));
        return;
      }
      var copy = el(tag);
      if (tag === "a") {
        var href = node.getAttribute("href") || "";
        if (!/^(https?:|mailto:)/i.test(href)) { cleanInto(node, target); return; }
        copy.setAttribute("href", href);
      }
      if ((tag === "td" || tag === "th") && node.getAttribute("colspan")) copy.setAttribute("colspan", node.getAttribute("colspan"));
      if ((tag === "td" || tag === "th") && node.getAttribute("rowspan")) copy.setAttribute("rowspan", node.getAttribute("rowspan"));
      cleanInto(node, copy);
      // Word writes an empty paragraph between paragraphs: keep only ones with something in.
      if (tag === "p" && !copy.textContent.trim() && !copy.querySelector("img")) return;
      target.appendChild(copy);
    });
  }

  function clean(html) {
    // Style attributes are renamed before parsing: the page's policy forbids inline styles,
    // even in a parsed document that is never shown, and only their bold and italic matter.
    html = html.replace(/<style[\s\S]*?<\/style>/gi, "")
      .replace(/(<[^>]*?\s)style\s*=/gi, "$1data-pasted-style=");
    var parsed = new DOMParser().parseFromString(html, "text/html");  // runs nothing
    var holder = el("div");
    cleanInto(parsed.body, holder);
    return holder;
  }

  /* --- the body editor ------------------------------------------------------------------- */

  var previews = {};  // cid part -> blob: URL of the chosen photo
  var photoBase = "";  // editing: where the article's own photos are shown from

  function inlineImage(cid, alt) {
    var img = el("img", { "data-cid": cid, alt: alt || ("Ảnh " + cid) });
    if (previews[cid]) img.src = previews[cid];
    else if (photoBase) img.src = photoBase + encodeURIComponent(cid);
    return img;
  }

  function serialize(editor) {
    // As text: an <img src="cid:..."> element, even detached, would be fetched (and refused).
    return editor.innerHTML.replace(/<img\b[^>]*?\bdata-cid="([^"]+)"[^>]*>/g, '<img src="cid:$1">');
  }

  function setupEditor(form) {
    var textarea = form.querySelector("#body");
    if (!textarea || !window.DOMParser) return null;
    photoBase = form.getAttribute("data-photo-base") || "";
    var editor = el("div", { "class": "editor", contenteditable: "true", role: "textbox",
      "aria-multiline": "true", "aria-labelledby": "body-label", "aria-describedby": "body-hint",
      id: "body-editor" });
    var source = clean(textarea.value);
    while (source.firstChild) editor.appendChild(source.firstChild);
    var toolbar = el("div", { "class": "toolbar", role: "toolbar", "aria-label": "Định dạng nội dung" });
    [["formatBlock", "p", "Đoạn văn"], ["formatBlock", "h2", "Tiêu đề"], ["formatBlock", "h3", "Tiêu đề nhỏ"],
     ["bold", null, "Đậm"], ["italic", null, "Nghiêng"], ["insertUnorderedList", null, "Danh sách"],
     ["insertOrderedList", null, "Danh sách số"], ["createLink", null, "Liên kết"]].forEach(function (b) {
      var button = el("button", { type: "button", text: b[2] });
      button.addEventListener("click", function () {
        editor.focus();
        var value = b[1];
        if (b[0] === "createLink") {
          value = window.prompt("Địa chỉ liên kết (bắt đầu bằng https://)", "https://");
          if (!value || !/^(https?:|mailto:)/i.test(value)) return;
        }
        document.execCommand(b[0], false, value);
        sync();
      });
      toolbar.appendChild(button);
    });
    function sync() { textarea.value = serialize(editor); }
    editor.addEventListener("input", sync);
    editor.addEventListener("paste", function (event) {
      var data = event.clipboardData;
      if (!data) return;
      event.preventDefault();
      var html = data.getData("text/html");
      var cleaned;
      if (html) cleaned = clean(html).innerHTML;
      else {
        cleaned = data.getData("text/plain").split(/\r?\n\s*\r?\n/).map(function (para) {
          var p = el("p");
          para.split(/\r?\n/).forEach(function (line, n) {
            if (n) p.appendChild(el("br"));
            p.appendChild(document.createTextNode(line));
          });
          return p.outerHTML;
        }).join("");
      }
      document.execCommand("insertHTML", false, cleaned);
      sync();
    });
    textarea.hidden = true;
    textarea.removeAttribute("required");
    textarea.parentNode.insertBefore(toolbar, textarea);
    textarea.parentNode.insertBefore(editor, textarea);
    var label = document.getElementById("body-label");
    if (label) label.setAttribute("for", "body-editor");
    form.addEventListener("submit", sync);
    return { editor: editor, sync: sync };
  }

  /* --- photos ---------------------------------------------------------------------------- */

  function setupPhotos(form, body) {
    var fieldset = form.querySelector("#photos");
    if (!fieldset || !window.FormData || !window.XMLHttpRequest) return;
    var list = fieldset.querySelector("#rows");
    var drop = fieldset.querySelector("#dropzone");
    var picker = fieldset.querySelector("#picker");
    var status = el("p", { "class": "error", role: "alert", id: "photos-status" });
    var items = [];
    var counter = 0;
    list.innerHTML = "";  // the rows without JavaScript give way to the script's
    drop.hidden = false;
    drop.after(status);

    function add(files) {
      status.textContent = "";
      Array.prototype.forEach.call(files, function (file) {
        if (ACCEPTED.indexOf(file.type) < 0 && !/\.(jpe?g|png|webp|gif|avif|heic|heif)$/i.test(file.name)) {
          status.textContent = "“" + file.name + "” không phải ảnh JPEG, PNG hay WebP, nên chưa được thêm.";
          return;
        }
        counter += 1;
        var item = { file: file, part: "anh-" + counter, caption: "", role: items.length ? "gallery" : "inline", error: "" };
        item.url = URL.createObjectURL(file);
        previews[item.part] = item.url;
        items.push(item);
      });
      render();
    }

    function move(item, by) {
      var at = items.indexOf(item);
      var to = at + by;
      if (to < 0 || to >= items.length) return;
      items.splice(at, 1);
      items.splice(to, 0, item);
      render(item, by < 0 ? "up" : "down");
    }

    function remove(item) {
      items.splice(items.indexOf(item), 1);
      if (body) {
        Array.prototype.forEach.call(body.editor.querySelectorAll('img[data-cid="' + item.part + '"]'), function (img) { img.remove(); });
        body.sync();
      }
      render();
    }

    function place(item) {
      if (!body) return;
      item.role = "inline";
      body.editor.focus();
      var selection = window.getSelection();
      var range;
      if (selection.rangeCount && body.editor.contains(selection.anchorNode)) {
        range = selection.getRangeAt(0);
        range.deleteContents();
      } else {
        range = document.createRange();
        range.selectNodeContents(body.editor);
        range.collapse(false);
      }
      // Its own paragraph, inserted as a node (execCommand would add inline styles).
      var paragraph = el("p", {}, [inlineImage(item.part, item.caption)]);
      var block = range.startContainer;
      while (block && block.parentNode !== body.editor && block !== body.editor) block = block.parentNode;
      if (block && block !== body.editor) block.after(paragraph);
      else range.insertNode(paragraph);
      body.sync();
      render();
    }

    function render(focusItem, focusWhich) {
      list.innerHTML = "";
      items.forEach(function (item, n) {
        var number = n + 1;
        var caption = el("input", { id: "caption-" + number, name: "caption", maxlength: "500" });
        caption.value = item.caption;
        caption.addEventListener("input", function () { item.caption = caption.value; });
        var role = el("select", { id: "role-" + number, name: "role" });
        Object.keys(ROLES).forEach(function (key) {
          var option = el("option", { value: key, text: ROLES[key] });
          if (key === item.role) option.selected = true;
          role.appendChild(option);
        });
        role.addEventListener("change", function () { item.role = role.value; });
        var thumb = el("img", { "class": "thumb", src: item.url, alt: "Xem trước ảnh " + number + ": " + item.file.name });
        var tools = el("div", { "class": "tools" });
        var buttons = {
          up: ["Lên", function () { move(item, -1); }],
          down: ["Xuống", function () { move(item, 1); }],
          place: ["Chèn vào nội dung", function () { place(item); }],
          remove: ["Bỏ ảnh", function () { remove(item); }]
        };
        Object.keys(buttons).forEach(function (key) {
          var button = el("button", { type: "button", "data-action": key, text: buttons[key][0],
            "aria-label": buttons[key][0] + " (ảnh " + number + ")" });
          if ((key === "up" && n === 0) || (key === "down" && n === items.length - 1)) button.disabled = true;
          button.addEventListener("click", buttons[key][1]);
          tools.appendChild(button);
          if (item === focusItem && key === focusWhich) setTimeout(function () { (button.disabled ? caption : button).focus(); });
        });
        var children = [
          el("div", { "class": "field" }, [el("span", { "class": "label", text: "Ảnh " + number }), thumb]),
          el("div", { "class": "field" }, [el("label", { "for": "caption-" + number, text: "Chú thích ảnh " + number }), caption]),
          el("div", { "class": "field" }, [el("label", { "for": "role-" + number, text: "Vị trí ảnh " + number }), role]),
          tools
        ];
        if (item.error) {
          children.push(el("p", { "class": "error", id: "photo-" + number + "-error", text: item.error }));
          caption.setAttribute("aria-describedby", "photo-" + number + "-error");
        }
        list.appendChild(el("li", { "class": "row", "data-part": item.part }, children));
      });
    }

    picker.addEventListener("change", function () { add(picker.files); picker.value = ""; });
    ["dragenter", "dragover"].forEach(function (name) {
      fieldset.addEventListener(name, function (event) { event.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      fieldset.addEventListener(name, function () { drop.classList.remove("over"); });
    });
    fieldset.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) add(event.dataTransfer.files);
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (body) body.sync();
      upload(form, items, render);
    });
  }

  function upload(form, items, render) {
    var data = new FormData();
    Array.prototype.forEach.call(form.elements, function (field) {
      if (!field.name || field.name === "photo" || field.name === "caption" || field.name === "role" || field.disabled) return;
      data.append(field.name, field.value);
    });
    items.forEach(function (item) {  // rows of photo, caption, role (and the photo's name)
      data.append("photo", item.file, item.file.name);
      data.append("caption", item.caption);
      data.append("role", item.role);
      data.append("part", item.part);
    });
    var progress = form.querySelector("#progress");
    var bar = form.querySelector("#progress-bar");
    var text = form.querySelector("#progress-text");
    var button = form.querySelector("button[type=submit]");
    clearErrors(form);
    progress.hidden = false;
    button.disabled = true;
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Desk-Script", "1");
    xhr.upload.addEventListener("progress", function (event) {
      if (!event.lengthComputable) return;
      var percent = Math.round(event.loaded * 100 / event.total);
      bar.value = percent;
      text.textContent = percent + "% (" + Math.round(event.loaded / 1048576) + " / " + Math.round(event.total / 1048576) + " MB)";
    });
    xhr.addEventListener("load", function () {
      var answer = null;
      try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = null; }
      if (xhr.status === 201 && answer && answer.location) {
        text.textContent = "Đã gửi xong, đang mở bài viết…";
        window.location.assign(answer.location);
        return;
      }
      button.disabled = false;
      progress.hidden = true;
      if (answer && answer.errors) {
        if (!answer.errors.form) answer.errors.form = "Bài chưa gửi được: hãy xem các ghi chú màu đỏ. Những gì bạn đã viết và các ảnh đã chọn vẫn còn.";
        showErrors(form, answer.errors);
        (answer.photos || []).forEach(function (message, n) { if (items[n]) items[n].error = message; });
        render();
        var first = form.querySelector("[aria-invalid=true], .row .error");
        if (first) first.scrollIntoView({ block: "center" });
        return;
      }
      showErrors(form, { form: xhr.status === 403
        ? "Phiên làm việc đã hết hạn nên bài chưa được gửi. Hãy mở trang đăng nhập ở thẻ mới, đăng nhập lại, rồi quay lại đây bấm gửi: những gì bạn đã viết vẫn còn."
        : "Bài chưa gửi được (mã " + xhr.status + "). Những gì bạn đã viết vẫn còn; hãy thử lại." });
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      progress.hidden = true;
      showErrors(form, { form: "Mất kết nối trong lúc gửi. Những gì bạn đã viết vẫn còn; hãy kiểm tra mạng rồi bấm gửi lại." });
    });
    xhr.send(data);
  }

  function clearErrors(form) {
    Array.prototype.forEach.call(form.querySelectorAll(".error.js, .alert.js"), function (node) { node.remove(); });
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (node) { node.removeAttribute("aria-invalid"); });
    Array.prototype.forEach.call(form.querySelectorAll(".row"), function (row) { row.removeAttribute("data-error"); });
  }

  function showErrors(form, errors) {
    Object.keys(errors).forEach(function (name) {
      var message = errors[name];
      var field = name === "form" ? null : form.querySelector('[name="' + name + '"]');
      if (field && field.hidden && name === "body") field = document.getElementById("body-editor");
      if (!field) {
        form.insertBefore(el("p", { "class": "alert js", role: "alert", text: message }), form.firstChild);
        return;
      }
      var id = name + "-error";
      var old = document.getElementById(id);
      if (old) old.remove();
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", id);
      field.parentNode.appendChild(el("p", { "class": "error js", id: id, text: message }));
    });
  }

  /* --- an article's status --------------------------------------------------------------- */

  function follow(state) {
    var url = state.getAttribute("data-status-url");
    var label = document.getElementById("status-label");
    var extra = document.getElementById("status-extra");
    var tries = 0;
    function ask() {
      tries += 1;
      var xhr = new XMLHttpRequest();
      xhr.open("GET", url);
      xhr.addEventListener("load", function () {
        if (xhr.status !== 200) return;
        var answer = JSON.parse(xhr.responseText);
        label.textContent = answer.label;
        label.className = "status status-" + answer.status;
        extra.textContent = "";
        if (answer.page) {
          extra.appendChild(document.createTextNode("· "));
          extra.appendChild(el("a", { href: answer.page, text: "Xem trên cổng thông tin" }));
        } else if (answer.error) {
          extra.textContent = "· " + answer.error;
        }
        if (answer.settled) refresh();
        else if (tries < 400) setTimeout(ask, tries < 20 ? 1000 : 3000);
      });
      xhr.send();
    }
    // Settled: the rest of the page (photos, time, history) is brought up to date in place.
    function refresh() {
      var xhr = new XMLHttpRequest();
      xhr.open("GET", window.location.href);
      xhr.responseType = "document";
      xhr.addEventListener("load", function () {
        var fresh = xhr.status === 200 && xhr.response && xhr.response.querySelector("main");
        var main = document.querySelector("main");
        if (!fresh || !main) return;
        main.replaceChildren.apply(main, Array.prototype.map.call(fresh.childNodes, function (node) {
          return document.importNode(node, true);
        }));
      });
      xhr.send();
    }
    setTimeout(ask, 800);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("article-form");
    if (form) {
      var body = setupEditor(form);
      setupPhotos(form, body);
    }
    var state = document.getElementById("state");
    if (state && state.getAttribute("data-settled") === "no") follow(state);
  });
})();
