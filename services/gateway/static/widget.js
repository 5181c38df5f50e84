/* docent widget: a conversation with the docs, each answer streamed in with its sources.
 *
 * Embed it in any page:
 *   <script src="https://GATEWAY/widget.js" data-api-key="KEY" defer></script>
 * Attributes (all optional):
 *   data-api-key            sent as `Authorization: Bearer KEY` (give it only the scopes the widget needs)
 *   data-target             CSS selector of an element to mount into; default: a floating "Ask the docs" button
 *   data-api-url            the gateway; default: where this script came from
 *   data-index              the index to ask; default: the gateway's
 *   data-llm                the LLM to ask (a configured one's name, or `extractive`); default: the router's choice
 *   data-key-from-fragment  read the key from the page's URL fragment (#key=KEY), as docent's own page does
 *
 * Plain JavaScript, no build step. Nothing the docs, the LLM or the reader wrote is ever parsed as HTML:
 * answers' Markdown is rendered by building elements (a small renderer below) whose text is text nodes.
 */
(() => {
  "use strict";

  const script = document.currentScript || document.querySelector("script[src$='widget.js']");
  if (!script) {
    console.error("docent widget: load widget.js with a plain <script src> tag (not as a module)");
    return;
  }
  const scriptUrl = new URL(script.src, document.baseURI);
  const KEY_STORAGE = "docent-api-key";
  const CONVERSATION_STORAGE = "docent-conversation"; // + the gateway, index and mount: one conversation per widget
  const STORED_TURNS = 20; // the last turns a reload shows again (sessionStorage holds a few MB)
  const CITATION_START = /\[[\d,\s]*$/; // an answer's tail that may still become a citation
  const LONGEST_CITATION = 24;
  const SNIPPET_CHARS = 200; // of a cited source's snippet shown under it
  const NEAREST_PAGES = 3;
  const FOLLOWING_SLACK_PX = 32; // scrolled this close to the bottom, the conversation still follows a streaming answer
  const COPIED_FOR_MS = 2000;
  const INPUT_MAX_PX = 160; // the question box grows with its text up to this height, then scrolls
  const LINK_SCHEMES = new Set(["http:", "https:"]); // of links in answers; relative ones resolve against the page
  // A thumb (cuff and hand) drawn here rather than the emoji: not every system has an emoji font.
  const THUMB = "M2 10h4v11H2zM8 21V10l4.6-7.1c.6-.9 2.3-.6 2.3.8 0 .2 0 .4-.1.6L13.7 9H20a2 2 0 0 1 2 2.3l-1.3 8A2 2 0 0 1 18.7 21z";
  const UPSIDE_DOWN = "matrix(1 0 0 -1 0 24)";

  // ---------------------------------------------------------------- the stream

  /** Server-sent events from text arriving in arbitrary pieces (the WHATWG event-stream format). */
  class EventStreamParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.rest = "";
      this.event = "";
      this.data = [];
    }

    push(text) {
      let buffer = this.rest + text;
      let held = "";
      if (buffer.endsWith("\r")) { // maybe half of a \r\n: decide when the next piece comes
        held = "\r";
        buffer = buffer.slice(0, -1);
      }
      const lines = buffer.split(/\r\n|\r|\n/);
      this.rest = lines.pop() + held;
      for (const line of lines) this.line(line);
    }

    /** The stream is over: a held \r ended its line after all (an unfinished event is dropped, as the format says). */
    end() {
      if (this.rest.endsWith("\r")) this.push("\n");
    }

    line(line) {
      if (line === "") return this.dispatch();
      if (line.startsWith(":")) return; // a comment: keep-alive pings
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") this.event = value;
      else if (field === "data") this.data.push(value);
    }

    dispatch() {
      if (this.data.length) this.onEvent(this.event || "message", this.data.join("\n"));
      this.event = "";
      this.data = [];
    }
  }

  /** A failure with the words a reader should see; `status` is the HTTP status that caused it, if one did. */
  class WidgetError extends Error {
    constructor(message, status = 0, detail = "") {
      super(message);
      this.status = status;
      this.detail = detail;
    }
  }

  function seconds(response) {
    const value = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    return Number.isFinite(value) ? ` Try again in ${value} s.` : " Try again shortly.";
  }

  function detailOf(body) {
    const detail = body && body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((e) => e && e.msg).filter(Boolean).join("; ");
    return "";
  }

  async function httpError(response, keyHint) {
    let detail = "";
    try {
      detail = detailOf(await response.json());
    } catch (_) { /* not JSON: the status says enough */ }
    const said = detail ? ` (${detail})` : "";
    const error = (message) => new WidgetError(message, response.status, detail);
    switch (response.status) {
      case 401: return error(`This docent needs a valid API key${said}.${keyHint}`);
      case 403: return error(`This API key may not do that: it was revoked or lacks the scope${said}.`);
      case 404: return error(`Not found${said}.`);
      case 422: return error(`The question was not accepted${said}.`);
      case 429: return error(`Too many questions for now${said}.${seconds(response)}`);
      case 502: return error(`No language model could answer${said}.`);
      case 503: return error(`docent is not ready (${detail || "starting up or busy"}).${seconds(response)}`);
      default: return error(`docent answered HTTP ${response.status}${said}.`);
    }
  }

  /** The gateway no longer knows the conversation a question continued (expired, or another key's). */
  function conversationGone(error) {
    return error instanceof WidgetError && error.status === 404 && !/\bindex\b/i.test(error.detail);
  }

  function unreachable(apiUrl) {
    return new WidgetError(`Could not reach docent at ${apiUrl}: check the connection (or the gateway's CORS origins).`);
  }

  /** The gateway's HTTP API, as the widget uses it. */
  class Api {
    constructor(apiUrl, apiKey, keyHint, { index, llm }) {
      this.apiUrl = apiUrl;
      this.apiKey = apiKey;
      this.keyHint = keyHint;
      this.index = index;
      this.llm = llm;
    }

    headers() {
      const headers = { "Content-Type": "application/json" };
      if (this.apiKey()) headers.Authorization = `Bearer ${this.apiKey()}`;
      return headers;
    }

    async post(path, body, signal, accept) {
      let response;
      try {
        response = await fetch(new URL(path, this.apiUrl), {
          method: "POST",
          headers: { ...this.headers(), Accept: accept },
          body: JSON.stringify(body),
          signal,
        });
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw unreachable(this.apiUrl);
      }
      if (!response.ok) throw await httpError(response, this.keyHint);
      return response;
    }

    /** Asks (continuing the conversation `conversationId`, if given), calling onEvent(name, data) for each event. */
    async stream(question, conversationId, onEvent, signal) {
      const body = { query: question };
      if (this.index) body.index = this.index;
      if (this.llm) body.options = { llm: this.llm };
      if (conversationId) body.conversation_id = conversationId; // the gateway keeps the turns: no history sent
      const response = await this.post("stream", body, signal, "text/event-stream");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const parser = new EventStreamParser((name, data) => {
        let parsed;
        try {
          parsed = JSON.parse(data);
        } catch (_) {
          throw new WidgetError("docent sent an event the widget cannot read.");
        }
        onEvent(name, parsed);
      });
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (error) {
          if (error.name === "AbortError") throw error;
          throw new WidgetError("The connection to docent broke off before the answer was complete.");
        }
        try {
          if (!chunk.done) parser.push(decoder.decode(chunk.value, { stream: true }));
          else {
            parser.push(decoder.decode());
            parser.end();
          }
        } catch (error) {
          reader.cancel().catch(() => {}); // an error event, or an event the page could not show: hang up
          throw error;
        }
        if (chunk.done) return;
      }
    }

    async feedback(answerId, rating) {
      const response = await this.post("feedback", { answer_id: answerId, rating }, undefined, "application/json");
      return response.json().catch(() => ({}));
    }
  }

  // ---------------------------------------------------------------- rendering

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === false || value === null || value === undefined) continue;
      node.setAttribute(name, value === true ? "" : String(value));
    }
    node.append(...children); // strings become text nodes: never parsed as HTML
    return node;
  }

  function thumb(transform) {
    const svgNs = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNs, "svg");
    const path = document.createElementNS(svgNs, "path");
    for (const [name, value] of [["viewBox", "0 0 24 24"], ["width", "18"], ["height", "18"], ["aria-hidden", "true"], ["focusable", "false"]]) {
      svg.setAttribute(name, value);
    }
    path.setAttribute("d", THUMB);
    path.setAttribute("fill", "currentColor");
    if (transform) path.setAttribute("transform", transform);
    svg.append(path);
    return svg;
  }

  /** A source's URL, when it is one a link may point to (http or https). */
  function linkable(source) {
    try {
      const url = new URL(source);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  /** A link's URL in an answer, resolved against the page, when it is http(s) (or relative on an http(s) page); else null. */
  function safeHref(href) {
    try {
      const url = new URL(href, document.baseURI); // the parsed URL is what is checked and what the link gets
      return LINK_SCHEMES.has(url.protocol) ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  function sourceLink(source, text, label) {
    const href = linkable(source.source);
    if (!href) return document.createTextNode(text);
    return el("a", { href, target: "_blank", rel: "noopener noreferrer", title: source.title || href, "aria-label": label }, text);
  }

  /** A link of an answer to `href` (already checked by safeHref), opening in a new tab. */
  function link(href, text) {
    return el("a", { href, target: "_blank", rel: "noopener noreferrer" }, text);
  }

  /** Copies a code block's text: the Clipboard API where the page may use it, else the selection and execCommand. */
  async function copyCode(button, code) {
    let copied = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(code.textContent);
        copied = true;
      }
    } catch (_) { /* refused (permissions, an unfocused page): try the older way */ }
    if (!copied) copied = copyBySelection(code);
    const mac = /Mac|iPhone|iPad/.test(navigator.platform || "");
    const said = copied ? "Copied" : `Selected: press ${mac ? "⌘C" : "Ctrl+C"}`;
    button.textContent = said;
    button.setAttribute("aria-label", said);
    button.classList.toggle("docent-copied", copied);
    clearTimeout(button.docentReset);
    button.docentReset = setTimeout(() => {
      button.textContent = "Copy";
      button.setAttribute("aria-label", "Copy code");
      button.classList.remove("docent-copied");
    }, COPIED_FOR_MS);
  }

  /** The code selected and copied the old way; left selected when that fails, for the reader to copy. */
  function copyBySelection(code) {
    const selection = window.getSelection();
    if (!selection) return false;
    const range = document.createRange();
    range.selectNodeContents(code);
    selection.removeAllRanges();
    selection.addRange(range);
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (_) { /* not supported any more */ }
    if (copied) selection.removeAllRanges();
    return copied;
  }

  // ---------------------------------------------------------------- Markdown

  /* A small Markdown renderer for answers: paragraphs (a single line break kept), fenced
   * code blocks (with a copy button), lists (nested, numbered), headings, `code`, **bold**,
   * *italics*, links whose URL is http(s) or relative, and citation marks. It builds DOM
   * nodes, never HTML: every piece of text is a text node, so markup in an answer is shown,
   * not run, and a link to any other scheme (javascript:, data:, mailto:) stays text. */

  const FENCE = /^( {0,3})(`{3,}|~{3,})(.*)$/;
  const HEADING = /^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
  const LIST_ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])[ \t]+(.*)$/;
  const INLINE = new RegExp([
    /(`+)([^`][\s\S]*?)\1(?!`)/.source, // 1, 2: a code span
    /\[([^[\]\n]+)\]\(([^()\s]+)\)/.source, // 3, 4: a link
    /\[(\d+(?:\s*,\s*\d+)*)\]/.source, // 5: citation marks
    /\*\*(?=\S)([\s\S]*?\S)\*\*/.source, // 6: bold
    /(?<![*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![*\w])/.source, // 7: italics
    /<(https?:\/\/[^\s<>]+)>/.source, // 8: an autolink
  ].join("|"), "g");
  const CITATION_MARKS = /\s*\[\d+(?:\s*,\s*\d+)*\]/g;
  const UNSUPPORTED = "the cited source does not seem to say this";

  function isListItem(line) {
    return LIST_ITEM.test(line);
  }

  function ordered(marker) {
    return /\d/.test(marker);
  }

  function indentOf(line) {
    return line.length - line.trimStart().length;
  }

  /** A line that ends a paragraph: a fence, a heading, a bullet or a list numbered from 1. */
  function interrupts(line) {
    const item = LIST_ITEM.exec(line);
    return FENCE.test(line) || HEADING.test(line) || (item && (!ordered(item[2]) || Number.parseInt(item[2], 10) === 1));
  }

  /** The blocks of a Markdown text: {kind: "code" | "heading" | "list" | "paragraph", …}. */
  function blocksOf(text) {
    const lines = text.replace(/\r\n?/g, "\n").split("\n");
    const blocks = [];
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      const fence = FENCE.exec(line);
      const heading = HEADING.exec(line);
      if (!line.trim()) {
        i += 1;
      } else if (fence && !(fence[2][0] === "`" && fence[3].includes("`"))) {
        const close = new RegExp(`^ {0,3}${fence[2][0]}{${fence[2].length},}[ \\t]*$`);
        const code = [];
        for (i += 1; i < lines.length && !close.test(lines[i]); i += 1) {
          code.push(lines[i].slice(Math.min(fence[1].length, indentOf(lines[i])))); // as indented as its fence
        }
        i += 1; // the closing fence (an answer still streaming may not have it yet)
        blocks.push({ kind: "code", language: fence[3].trim().split(/\s+/)[0], text: code.join("\n") });
      } else if (heading) {
        blocks.push({ kind: "heading", level: heading[1].length, text: heading[2] });
        i += 1;
      } else if (isListItem(line)) {
        i = listAt(lines, i, blocks);
      } else {
        const start = i;
        for (i += 1; i < lines.length && lines[i].trim() && !interrupts(lines[i]); i += 1);
        blocks.push({ kind: "paragraph", text: lines.slice(start, i).map((l) => l.trim()).join("\n") });
      }
    }
    return blocks;
  }

  /** The list starting at line `i`, its items' lines kept for blocksOf; returns the line after it. */
  function listAt(lines, i, blocks) {
    const first = LIST_ITEM.exec(lines[i]);
    const isOrdered = ordered(first[2]);
    const items = [];
    let item = null;
    let offset = 0; // where the current item's text starts: lines indented as far belong to it
    while (i < lines.length) {
      const line = lines[i];
      const marker = LIST_ITEM.exec(line);
      if (marker && (!item || indentOf(line) < offset)) {
        if (item && ordered(marker[2]) !== isOrdered) break; // another kind of list begins
        item = [marker[3]];
        items.push(item);
        offset = marker[0].length - marker[3].length;
        i += 1;
      } else if (!line.trim()) {
        let next = i + 1;
        while (next < lines.length && !lines[next].trim()) next += 1;
        const following = next < lines.length ? lines[next] : "";
        const sibling = LIST_ITEM.exec(following);
        if (sibling && indentOf(following) < offset && ordered(sibling[2]) === isOrdered) {
          i = next; // a blank line between two items
        } else if (following && indentOf(following) >= offset) {
          for (; i < next; i += 1) item.push(""); // more paragraphs (or code) of the item
        } else {
          break;
        }
      } else if (indentOf(line) > 0) {
        item.push(line.slice(Math.min(offset, indentOf(line)))); // the item's text, or a nested list
        i += 1;
      } else if (!FENCE.test(line) && !HEADING.test(line)) {
        item.push(line); // the item's text, continued without indenting
        i += 1;
      } else {
        break;
      }
    }
    const start = isOrdered ? Number.parseInt(first[2], 10) : 1;
    blocks.push({ kind: "list", ordered: isOrdered, start, items: items.map((lines) => lines.join("\n")) });
    return i;
  }

  function codeText(text) {
    return /^ .*[^ ].* $/s.test(text) ? text.slice(1, -1) : text; // `` `x` `` shows `x`
  }

  /** `text` with each line break a <br>. */
  function appendLines(parent, text) {
    text.split("\n").forEach((line, i) => {
      if (i) parent.append(el("br"));
      if (line) parent.append(line);
    });
  }

  /** Renders answers; `sources` (number → source) makes citations links, `unsupported` marks some. */
  class Markdown {
    constructor(sources, citations) {
      this.sources = sources;
      this.unsupported = (citations || []).filter((c) => c && c.supported === false && typeof c.sentence === "string");
    }

    /** The nodes of a Markdown text. */
    render(text) {
      return blocksOf(text).map((block) => this.block(block));
    }

    block(block) {
      switch (block.kind) {
        case "code": {
          const code = el("code", block.language ? { class: `language-${block.language}` } : {}, block.text);
          const copy = el("button", { type: "button", class: "docent-copy", "aria-label": "Copy code" }, "Copy");
          copy.addEventListener("click", () => copyCode(copy, code));
          const language = el("span", { class: "docent-code-language" }, block.language || "code");
          return el("div", { class: "docent-code" }, el("div", { class: "docent-code-bar" }, language, copy), el("pre", {}, code));
        }
        case "heading":
          return this.inline(el(`h${Math.min(block.level + 3, 6)}`, { class: "docent-heading" }), block.text);
        case "list": {
          const list = el(block.ordered ? "ol" : "ul", block.ordered && block.start !== 1 ? { start: block.start } : {});
          for (const item of block.items) {
            const li = el("li");
            const tight = !/\n[ \t]*\n/.test(item); // no blank line: its text needs no paragraphs
            for (const inner of blocksOf(item)) {
              if (tight && inner.kind === "paragraph") this.inline(li, inner.text);
              else li.append(this.block(inner));
            }
            list.append(li);
          }
          return list;
        }
        default:
          return this.inline(el("p"), block.text);
      }
    }

    /** Appends `text`'s inline Markdown to `parent`; `before` is the raw text preceding it in its block. */
    inline(parent, text, before = "") {
      let last = 0;
      for (const match of text.matchAll(INLINE)) {
        const preceding = before + text.slice(0, match.index);
        if (match.index > last) appendLines(parent, text.slice(last, match.index));
        const [whole, ticks, code, label, url, numbers, bold, italic, autolink] = match;
        if (ticks) parent.append(el("code", {}, codeText(code)));
        else if (label !== undefined) parent.append(safeHref(url) ? link(safeHref(url), label) : whole);
        else if (numbers !== undefined) this.citation(parent, whole, numbers, preceding);
        else if (bold !== undefined) parent.append(this.inline(el("strong"), bold, `${preceding}**`));
        else if (italic !== undefined) parent.append(this.inline(el("em"), italic, `${preceding}*`));
        else parent.append(safeHref(autolink) ? link(safeHref(autolink), autolink) : whole);
        last = match.index + whole.length;
      }
      if (last < text.length) appendLines(parent, text.slice(last));
      return parent;
    }

    /** `[1]` or `[1, 3]`: each number of a known source a link to it, marked when its claim is unsupported. */
    citation(parent, whole, numbers, preceding) {
      const pieces = numbers.split(/(\s*,\s*)/); // numbers, with the separators as written between them
      if (!pieces.every((piece, i) => i % 2 || this.sources.has(Number.parseInt(piece, 10)))) {
        parent.append(whole);
        return;
      }
      const claim = preceding.replace(CITATION_MARKS, "").trimEnd();
      const doubted = this.unsupported.filter((c) => claim.endsWith(c.sentence.trim()));
      const marks = el("span", { class: "docent-cites" }, "[");
      pieces.forEach((piece, i) => {
        if (i % 2) return marks.append(piece);
        const number = Number.parseInt(piece, 10);
        const source = this.sources.get(number);
        const unsupported = doubted.some((c) => (c.sources || []).includes(number));
        let label = `source ${number}: ${source.title || source.source}`;
        if (unsupported) label += ` (${UNSUPPORTED})`;
        const mark = sourceLink(source, piece, label);
        if (mark.nodeType === Node.ELEMENT_NODE) {
          mark.classList.add("docent-cite");
          if (unsupported) {
            mark.classList.add("docent-unsupported");
            mark.title = UNSUPPORTED;
          }
          return marks.append(mark);
        }
        return marks.append(unsupported ? el("span", { class: "docent-cite docent-unsupported", title: UNSUPPORTED }, piece) : mark);
      });
      marks.append("]");
      parent.append(marks);
    }
  }

  /** An answer's Markdown, shown again whole as it grows; a tail that may still become a citation waits. */
  class AnswerText {
    constructor(node, sources) {
      this.node = node;
      this.sources = sources;
      this.text = "";
      this.citations = [];
    }

    push(text) {
      this.text += text;
      const start = this.text.search(CITATION_START);
      const hold = start >= 0 && this.text.length - start <= LONGEST_CITATION;
      this.show(hold ? this.text.slice(0, start) : this.text);
    }

    /** The whole answer, its citations checked (those `supported: false` are marked). */
    finish(citations) {
      if (citations) this.citations = citations;
      this.show(this.text);
    }

    show(text) {
      this.node.replaceChildren(...new Markdown(this.sources, this.citations).render(text));
    }
  }

  /** The sources of the `sources` event, with what `done` says of each: cited or not, and the snippet used. */
  function settled(sources, cited) {
    const said = new Map((cited || []).map((s) => [s.number, s]));
    return sources.map((source) => {
      const done = said.get(source.number) || {};
      return { ...source, cited: done.cited === true, snippet: typeof done.snippet === "string" ? done.snippet : "" };
    });
  }

  /** `text` shortened to about `limit` characters, at a word. */
  function shorten(text, limit) {
    const flat = text.replace(/\s+/g, " ").trim();
    if (flat.length <= limit) return flat;
    const cut = flat.slice(0, limit);
    const space = cut.lastIndexOf(" ");
    return `${(space > limit * 0.6 ? cut.slice(0, space) : cut).replace(/[\s,;:.…-]+$/, "")}…`;
  }

  /** A source in a list: its number, its title as a link and, for a cited one, the passage the answer used. */
  function sourceItem(source, cited) {
    const title = source.title || source.source;
    const item = el("li", { value: source.number, class: "docent-source" }, sourceLink(source, title, null));
    if (!linkable(source.source) && source.title) item.append(el("span", { class: "docent-path" }, ` ${source.source}`));
    if (cited && source.snippet) {
      const snippet = shorten(source.snippet, SNIPPET_CHARS);
      item.append(el("blockquote", { class: "docent-snippet", title: snippet === source.snippet ? null : source.snippet }, snippet));
    }
    return item;
  }

  // ---------------------------------------------------------------- a turn: a question and its answer

  let ids = 0;

  /** An id no other element of the page has (a page may hold several widgets). */
  function uniqueId(name) {
    ids += 1;
    return `docent-${name}-${ids}`;
  }

  /** Questions differing only in case, spacing or closing punctuation ask the same thing. */
  function sameQuestion(a, b) {
    const plain = (text) => text.toLowerCase().replace(/\s+/g, " ").replace(/[\s?.!]+$/, "").trim();
    return plain(a) === plain(b);
  }

  /** What sessionStorage keeps of a `sources` event: the sources' text is not shown, so it stays out. */
  function storable(sourcesEvent) {
    return { ...sourcesEvent, sources: (sourcesEvent.sources || []).map(({ text, ...source }) => source) };
  }

  /** One question and its answer: the streamed Markdown, the feedback buttons right under it, then its sources. */
  class Turn {
    constructor(chat, question) {
      this.chat = chat;
      this.question = question;
      this.conversationId = null;
      this.record = null; // the events that showed the answer, kept so a reload can show it again
      this.clear();

      const sourcesId = uniqueId("sources");
      const nearestId = uniqueId("nearest");
      this.searched = el("p", { class: "docent-searched", hidden: true });
      this.note = el("p", { class: "docent-note", hidden: true });
      this.status = el("p", { class: "docent-status" });
      this.notice = el("p", { class: "docent-notice", hidden: true }, "Not in the docs");
      this.answer = el("div", { class: "docent-answer" });
      this.error = el("p", { class: "docent-error", role: "alert", hidden: true });
      this.again = el("button", { type: "button", class: "docent-again", hidden: true }, "Ask again");
      const rateButton = (label, icon) => el("button", {
        type: "button", class: "docent-rate", "aria-label": label, title: label, "aria-pressed": "false",
      }, icon);
      this.up = rateButton("Helpful", thumb(null)); // 👍
      this.down = rateButton("Not helpful", thumb(UPSIDE_DOWN)); // 👎
      this.ack = el("span", { class: "docent-ack", role: "status", "aria-live": "polite" });
      this.rating = el("div", { class: "docent-feedback", role: "group", "aria-label": "Was this answer helpful?", hidden: true },
        el("span", {}, "Was this helpful?"), this.up, this.down, this.ack);
      // The sources: the cited ones with the passage used, the others folded away.
      this.citedList = el("ol", { class: "docent-source-list docent-cited", hidden: true });
      this.moreList = el("ol", { class: "docent-source-list" });
      this.moreSummary = el("summary");
      this.more = el("details", { class: "docent-more", hidden: true }, this.moreSummary, this.moreList);
      this.sources = el("section", { class: "docent-sources", "aria-labelledby": sourcesId, hidden: true },
        el("h3", { id: sourcesId }, "Sources"), this.citedList, this.more);
      // An abstained answer that names no page itself: the pages its search came closest to.
      this.nearestList = el("ul", { class: "docent-source-list" });
      this.nearest = el("section", { class: "docent-nearest", "aria-labelledby": nearestId, hidden: true },
        el("h3", { id: nearestId }, "The nearest pages"), this.nearestList);
      this.llm = el("p", { class: "docent-llm", hidden: true });

      this.node = el("div", { class: "docent-turn" },
        el("p", { class: "docent-question" }, el("span", { class: "docent-sr" }, "You asked: "),
          el("span", { class: "docent-question-text" }, question)),
        el("div", { class: "docent-reply" }, el("span", { class: "docent-sr" }, "docent: "),
          this.searched, this.note, this.status, this.notice, this.answer, this.error, this.again,
          this.rating, this.sources, this.nearest, this.llm));
      this.up.addEventListener("click", () => this.rate("up"));
      this.down.addEventListener("click", () => this.rate("down"));
      this.again.addEventListener("click", () => {
        this.chat.focus(); // before the button hides: the focus goes back to the question box, not the page
        this.chat.answer(this);
      });
    }

    clear() {
      this.answerId = null;
      this.rated = false;
      this.text = null;
      this.sourcesEvent = null;
      this.finished = false;
    }

    /** Ready to (again) stream the answer. */
    start() {
      this.clear();
      this.answer.replaceChildren();
      this.answer.classList.remove("docent-abstained");
      this.searched.hidden = true;
      this.notice.hidden = true;
      for (const list of [this.citedList, this.moreList, this.nearestList]) list.replaceChildren();
      this.more.open = false;
      this.sources.hidden = true;
      this.nearest.hidden = true;
      this.llm.hidden = true;
      this.llm.replaceChildren();
      this.rating.hidden = true;
      this.ack.textContent = "";
      this.rateButtons(false);
      for (const button of [this.up, this.down]) button.setAttribute("aria-pressed", "false");
      this.showError(null);
      this.status.textContent = "Looking for the answer…";
    }

    /** A sentence about the conversation, above the answer (e.g. that it had expired). */
    say(text) {
      this.note.textContent = text;
      this.note.hidden = false;
    }

    onEvent(name, data) {
      if (name === "sources") {
        this.answerId = data.answer_id;
        this.sourcesEvent = data;
        this.conversationId = data.conversation_id || this.conversationId;
        const sources = data.sources || [];
        this.text = new AnswerText(this.answer, new Map(sources.map((s) => [s.number, s])));
        this.showSources(sources, false);
        this.showSearched(data.standalone_question);
        this.status.textContent = "Answering…";
      } else if (name === "token") {
        if (this.text) this.text.push(data.text || "");
      } else if (name === "fallback") {
        this.status.textContent = `${data.llm} failed; another language model takes over…`;
      } else if (name === "done") {
        this.finished = true;
        if (this.text) this.text.finish(data.citations || []);
        this.answerId = data.answer_id || this.answerId;
        this.conversationId = data.conversation_id || this.conversationId;
        this.status.textContent = "";
        const sources = settled((this.sourcesEvent && this.sourcesEvent.sources) || [], data.sources);
        if (data.abstained) this.showAbstained(sources);
        else this.showSources(sources, true);
        this.showSearched(data.standalone_question);
        this.showLlm(data);
        this.rating.hidden = !this.answerId;
        this.record = {
          question: this.question,
          sources: this.sourcesEvent && storable(this.sourcesEvent),
          text: this.text ? this.text.text : "",
          done: data,
          rating: null,
        };
      } else if (name === "error") {
        this.finished = true;
        throw new WidgetError(`The answer failed midway: ${data.message || "no reason given"}.`);
      }
    }

    /** An answer kept in sessionStorage, shown again as its events showed it. */
    replay(record) {
      if (record.sources) this.onEvent("sources", record.sources);
      if (record.text) this.onEvent("token", { text: record.text });
      this.onEvent("done", record.done || {});
      this.record.rating = record.rating || null;
      if (record.rating === "up" || record.rating === "down") this.showRated(record.rating);
    }

    /** The answer stopped (done, failed or replaced): its text shown whole. */
    settle() {
      if (this.text) this.text.finish();
    }

    fail(message) {
      this.status.textContent = "";
      this.showError(message);
      this.again.hidden = false;
    }

    stopped() {
      this.settle();
      this.status.textContent = this.finished ? "" : "Stopped: a newer question took its place.";
    }

    /** The standalone question the gateway searched for, when a follow-up was rewritten into one. */
    showSearched(standalone) {
      if (typeof standalone !== "string" || !standalone.trim() || sameQuestion(standalone, this.question)) return;
      this.searched.replaceChildren(el("span", { class: "docent-searched-label" }, "Searched for: "), standalone);
      this.searched.hidden = false;
    }

    /** While the answer streams, every source folded away; once it is done, the cited ones first, with their snippets. */
    showSources(sources, done) {
      const cited = done ? sources.filter((s) => s.cited) : [];
      const rest = done ? sources.filter((s) => !s.cited) : sources;
      this.citedList.replaceChildren(...cited.map((source) => sourceItem(source, true)));
      this.citedList.hidden = cited.length === 0;
      this.moreList.replaceChildren(...rest.map((source) => sourceItem(source, false)));
      const plural = rest.length === 1 ? "source" : "sources";
      this.moreSummary.textContent = cited.length ? `${rest.length} more ${plural}` : `${rest.length} ${plural}`;
      this.more.hidden = rest.length === 0;
      this.sources.hidden = sources.length === 0;
    }

    /** The documentation doesn't cover the question: a notice, no sources, the nearest pages. */
    showAbstained(sources) {
      this.answer.classList.add("docent-abstained");
      this.notice.hidden = false;
      this.sources.hidden = true;
      if (this.answer.querySelector("a:not(.docent-cite)")) return; // the answer lists them itself
      const pages = new Map();
      for (const source of sources) {
        const page = String(source.source || "").split("#", 1)[0];
        if (!pages.has(page)) pages.set(page, { source: page, title: (source.title || "").split(" > ", 1)[0] });
      }
      const nearest = [...pages.values()].slice(0, NEAREST_PAGES);
      this.nearestList.replaceChildren(...nearest.map((page) => sourceItem(page, false)));
      this.nearest.hidden = nearest.length === 0;
    }

    showLlm(done) {
      if (done.llm === "none") {
        this.llm.append("Not answered: no language model was asked");
        this.llm.hidden = false;
        return;
      }
      const llm = done.llm === "extractive" ? "extractive (a passage of the docs, no language model)" : done.llm;
      this.llm.append("Answered by ", el("strong", {}, llm || "unknown"));
      const failed = (done.fallbacks || []).map((f) => f.llm);
      if (failed.length) this.llm.append(` after ${failed.join(", ")} failed`);
      if (done.cached) this.llm.append(" (from the cache)");
      this.llm.hidden = false;
    }

    showError(message) {
      this.error.hidden = !message;
      this.error.textContent = message || "";
      this.again.hidden = true;
    }

    // aria-disabled, not disabled: a disabled button would drop the keyboard focus on the page's body.
    rateButtons(off) {
      for (const button of [this.up, this.down]) button.setAttribute("aria-disabled", String(off));
    }

    showRated(rating) {
      this.rated = true;
      this.rateButtons(true);
      (rating === "up" ? this.up : this.down).setAttribute("aria-pressed", "true");
    }

    async rate(rating) {
      if (!this.answerId || this.rated) return;
      this.rated = true; // one rating an answer
      this.rateButtons(true);
      this.ack.textContent = "Sending…";
      try {
        await this.chat.api.feedback(this.answerId, rating);
        this.showRated(rating);
        this.ack.textContent = "Thanks for your feedback!";
        if (this.record) {
          this.record.rating = rating;
          this.chat.save();
        }
      } catch (error) {
        this.rated = false;
        this.rateButtons(false);
        this.ack.textContent = "";
        this.showError(error instanceof WidgetError ? error.message : `The widget failed: ${error.message}`);
      }
    }
  }

  // ---------------------------------------------------------------- the conversation

  /** The turns of a conversation, newest at the bottom, and the question box under them, in `container`. */
  class Chat {
    constructor(root, container, api, { inline, storageKey }) {
      this.root = root; // the shadow root: where the focus is
      this.api = api;
      this.storageKey = storageKey;
      this.conversationId = null; // the gateway's, from the last answer: a follow-up sends it
      this.turns = [];
      this.controller = null;
      this.following = true; // the log stays scrolled to its bottom while an answer streams

      const questionId = uniqueId("question");
      const hintId = uniqueId("hint");
      this.empty = el("p", { class: "docent-empty" },
        "Ask a question about the docs. Follow-up questions continue the conversation.");
      this.log = el("div", {
        class: "docent-log", role: "log", "aria-live": "polite", "aria-label": "Conversation", "aria-busy": "false",
      });
      this.input = el("textarea", {
        id: questionId, name: "question", rows: 1, autocomplete: "off", enterkeyhint: "send",
        placeholder: "Ask about the docs…", required: true, "aria-describedby": hintId,
      });
      this.submit = el("button", { type: "submit", class: "docent-ask" }, "Ask");
      this.form = el("form", { class: "docent-form" },
        el("label", { for: questionId, class: "docent-sr" }, "Ask a question about the docs"),
        el("div", { class: "docent-row" }, this.input, this.submit));
      this.restart = el("button", { type: "button", class: "docent-restart", hidden: true }, "New conversation");
      this.toolbar = el("div", { class: "docent-toolbar" },
        el("span", { id: hintId, class: "docent-hint" }, "Shift+Enter: new line"), this.restart);
      this.announcer = el("p", { class: "docent-sr", role: "status" });
      container.append(el("div", { class: inline ? "docent docent-inline" : "docent docent-floating" },
        this.empty, this.log, this.form, this.toolbar, this.announcer));

      this.form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.send();
      });
      this.input.addEventListener("keydown", (event) => {
        // Enter sends, Shift+Enter is a new line; Enter that ends an IME composition only composes.
        if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
        event.preventDefault();
        if (this.form.requestSubmit) this.form.requestSubmit();
        else this.send();
      });
      this.input.addEventListener("input", () => this.fit());
      this.restart.addEventListener("click", () => this.restartConversation());
      this.log.addEventListener("scroll", () => { this.following = this.atBottom(); });
      // Scrolling up stops the following at once, before the scroll event (a token may arrive in between).
      this.log.addEventListener("wheel", (event) => { if (event.deltaY < 0) this.following = false; }, { passive: true });
      this.restore();
    }

    send() {
      const question = this.input.value.trim();
      if (!question) return;
      this.input.value = "";
      this.fit();
      this.ask(question);
    }

    ask(question) {
      const turn = new Turn(this, question);
      this.turns.push(turn);
      this.log.append(turn.node);
      this.showTurns();
      this.following = true;
      return this.answer(turn);
    }

    /** Streams `turn`'s answer, continuing the conversation; a conversation the gateway forgot is started anew, once. */
    async answer(turn) {
      if (this.controller) this.controller.abort(); // a new question stops the one still streaming
      const controller = new AbortController();
      this.controller = controller;
      turn.start();
      this.log.setAttribute("aria-busy", "true"); // screen readers read the turn once, whole, when it is done
      this.announcer.textContent = "Looking for the answer…";
      this.stick();
      let conversationId = this.conversationId;
      try {
        for (;;) {
          try {
            await this.api.stream(turn.question, conversationId, (name, data) => {
              turn.onEvent(name, data);
              // Not on `done`: its sources unfold under the feedback buttons, which settled() keeps in view.
              if (this.following && name !== "done") this.stick();
            }, controller.signal);
            break;
          } catch (error) {
            if (!conversationId || !conversationGone(error)) throw error;
            // Expired (or kept under another key): answer the question as the start of a new conversation.
            conversationId = null;
            this.conversationId = null;
            this.save();
            turn.say("The conversation had expired, so docent answered this as a new question.");
          }
        }
        if (!turn.finished) throw new WidgetError("The answer stopped before it was complete.");
        if (this.controller !== controller) return; // the conversation was restarted meanwhile
        this.conversationId = turn.conversationId || conversationId;
        this.save();
      } catch (error) {
        if (error.name === "AbortError") {
          turn.stopped();
          return;
        }
        turn.fail(error instanceof WidgetError ? error.message : `The widget failed: ${error.message}`);
      } finally {
        if (this.controller === controller) { // not replaced by a newer question
          turn.settle();
          this.controller = null;
          this.log.setAttribute("aria-busy", "false");
          this.announcer.textContent = "";
          this.settled(turn);
        }
      }
    }

    /** An answer is complete: its feedback buttons in view, and the focus back in the question box. */
    settled(turn) {
      if (this.following) this.reveal(turn.rating.hidden ? turn.node : turn.rating);
      // From the Ask button back to the box; a reader who went elsewhere meanwhile keeps their focus.
      if (this.root.activeElement === this.submit) this.focus();
    }

    restartConversation() {
      if (this.controller) this.controller.abort();
      this.controller = null;
      this.turns = [];
      this.log.replaceChildren();
      this.log.setAttribute("aria-busy", "false");
      this.conversationId = null;
      this.save();
      this.showTurns();
      this.announcer.textContent = "New conversation";
      this.focus();
    }

    showTurns() {
      const any = this.turns.length > 0;
      this.empty.hidden = any;
      this.restart.hidden = !any;
      this.input.placeholder = any ? "Ask a follow-up…" : "Ask about the docs…";
    }

    atBottom() {
      return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight <= FOLLOWING_SLACK_PX;
    }

    stick() {
      this.log.scrollTop = this.log.scrollHeight;
    }

    /** Scrolls the log (only the log, never the page) just enough for `node` to be in view, its top first. */
    reveal(node) {
      const view = this.log.getBoundingClientRect();
      const box = node.getBoundingClientRect();
      if (box.bottom > view.bottom) this.log.scrollTop += Math.min(box.bottom - view.bottom + 8, box.top - view.top);
      else if (box.top < view.top) this.log.scrollTop -= view.top - box.top + 8;
    }

    /** The question box as tall as its text, up to INPUT_MAX_PX. */
    fit() {
      const input = this.input;
      input.style.height = "auto";
      const borders = input.offsetHeight - input.clientHeight;
      input.style.height = `${Math.min(input.scrollHeight + borders, INPUT_MAX_PX)}px`;
    }

    focus() {
      this.input.focus();
    }

    /** The floating panel opened: the latest turn in view. */
    shown() {
      if (this.following) this.stick();
      this.focus();
    }

    save() {
      if (!this.storageKey) return;
      try {
        const turns = this.turns.filter((turn) => turn.record).slice(-STORED_TURNS).map((turn) => turn.record);
        if (turns.length || this.conversationId) {
          sessionStorage.setItem(this.storageKey, JSON.stringify({ conversation_id: this.conversationId, turns }));
        } else {
          sessionStorage.removeItem(this.storageKey);
        }
      } catch (_) { /* storage full or disabled: the conversation lasts as long as the page */ }
    }

    /** The conversation this tab had before a reload. */
    restore() {
      let saved = null;
      try {
        saved = JSON.parse(sessionStorage.getItem(this.storageKey) || "null");
      } catch (_) {
        return;
      }
      if (!saved || !Array.isArray(saved.turns)) return;
      this.conversationId = typeof saved.conversation_id === "string" ? saved.conversation_id : null;
      for (const record of saved.turns) {
        if (!record || typeof record.question !== "string") continue;
        const turn = new Turn(this, record.question);
        try {
          turn.replay(record);
        } catch (_) {
          continue; // a record this version cannot show
        }
        this.turns.push(turn);
        this.log.append(turn.node);
      }
      this.showTurns();
    }
  }

  // ---------------------------------------------------------------- mounting

  /** A shadow root for the widget, and a promise of its styles being in. */
  function shadowWith(host) {
    const root = host.attachShadow({ mode: "open" });
    // Hidden until the styles are in, so the page never shows the widget unstyled.
    host.style.visibility = "hidden";
    const styles = el("link", { rel: "stylesheet", href: new URL("widget.css", scriptUrl).href });
    const styled = new Promise((resolve) => {
      const show = () => {
        host.style.visibility = "";
        resolve();
      };
      styles.addEventListener("load", show);
      styles.addEventListener("error", show);
    });
    root.append(styles);
    return { root, styled };
  }

  function mountInline(target, api, storageKey) {
    const host = el("div", { class: "docent-host" });
    target.append(host);
    const { root, styled } = shadowWith(host);
    const chat = new Chat(root, root, api, { inline: true, storageKey });
    styled.then(() => chat.stick()); // a conversation restored after a reload shows its latest turn
    return chat;
  }

  function mountFloating(api, storageKey) {
    const host = el("div", { class: "docent-host" });
    document.body.append(host);
    const { root } = shadowWith(host);
    const panelId = uniqueId("panel");
    const toggle = el("button", {
      type: "button", class: "docent-toggle", "aria-expanded": "false", "aria-controls": panelId,
    }, "Ask the docs");
    const close = el("button", { type: "button", class: "docent-close", "aria-label": "Close" }, "×");
    const panel = el("div", { id: panelId, class: "docent-panel", role: "dialog", "aria-label": "Ask the docs", hidden: true },
      el("div", { class: "docent-panel-header" }, el("strong", {}, "Ask the docs"), close));
    root.append(toggle, panel);
    const chat = new Chat(root, panel, api, { inline: false, storageKey });
    const open = (shown) => {
      panel.hidden = !shown;
      toggle.setAttribute("aria-expanded", String(shown));
      if (shown) chat.shown();
      else toggle.focus();
    };
    toggle.addEventListener("click", () => open(panel.hidden));
    close.addEventListener("click", () => open(false));
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") open(false);
    });
    return chat;
  }

  /** The key in the page's fragment (#key=KEY), taken out of the address bar and kept for this tab. */
  function keyFromFragment() {
    const key = new URLSearchParams(location.hash.slice(1)).get("key");
    try {
      if (key) {
        sessionStorage.setItem(KEY_STORAGE, key);
        history.replaceState(history.state, "", location.pathname + location.search);
      }
      return key || sessionStorage.getItem(KEY_STORAGE);
    } catch (_) {
      return key; // storage disabled: the key lasts as long as the page
    }
  }

  function mount() {
    const options = script.dataset;
    const fromFragment = "keyFromFragment" in options;
    let apiKey = options.apiKey || (fromFragment ? keyFromFragment() : null);
    if (fromFragment) {
      window.addEventListener("hashchange", () => { apiKey = keyFromFragment() || apiKey; });
    }
    const keyHint = fromFragment ? " Open this page as …/#key=YOUR_KEY to give one." : "";
    const apiUrl = new URL(options.apiUrl || ".", scriptUrl);
    if (!apiUrl.pathname.endsWith("/")) apiUrl.pathname += "/";
    const api = new Api(apiUrl.href, () => apiKey, keyHint, { index: options.index, llm: options.llm });
    // One conversation per gateway, index and place in the page, for this tab.
    const storageKey = [CONVERSATION_STORAGE, apiUrl.href, options.index || "", options.target || "floating"].join(" ");
    if (!options.target) return mountFloating(api, storageKey);
    let target = null;
    try {
      target = document.querySelector(options.target);
    } catch (_) { /* not a selector: said below */ }
    if (!target) {
      console.error(`docent widget: no element matches data-target="${options.target}"`);
      return null;
    }
    return mountInline(target, api, storageKey);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount, { once: true });
  else mount();
})();
