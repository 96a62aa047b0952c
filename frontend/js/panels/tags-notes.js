// Tags and notes of a run or an experiment: the tags as chips (× removes one, typing adds one, with the
// tags in use offered as suggestions), and the notes in a textarea saved on demand. Notes are shown and
// edited as text only (textContent, a textarea's value): never parsed as HTML.
// Also the small pieces the lists share: tag chips that link to a filtered list, and the suggestions.

import { api } from "../api.js";
import { h, setText, toast } from "../dom.js";

const MAX_NOTES = 10000;
const SUGGESTIONS_ID = "idlab-tag-suggestions";
let suggestionsReadAt = 0;

/** The page's one <datalist> of the tags in use (GET /api/tags), re-read at most every 10 s. */
function suggestions() {
  let list = document.getElementById(SUGGESTIONS_ID);
  if (!list) {
    list = h(`datalist#${SUGGESTIONS_ID}`);
    document.body.append(list);
  }
  if (Date.now() - suggestionsReadAt > 10000) {
    suggestionsReadAt = Date.now();
    api("/api/tags", { query: { limit: 500 } })
      .then((answer) => list.replaceChildren(...answer.items.map((item) => h("option", { value: item.tag }))))
      .catch(() => { suggestionsReadAt = 0; });
  }
  return SUGGESTIONS_ID;
}

/** A text input for one tag, offering the tags in use; Enter calls onTag(text) and empties it. */
export function tagInput({ placeholder = "add a tag…", title, dataset, onTag }) {
  const input = h("input.tag-input", { type: "text", placeholder, title, dataset, maxlength: 40, list: suggestions(), autocomplete: "off" });
  input.addEventListener("focus", () => suggestions());
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    onTag(text);
  });
  return input;
}

/** Tags as small chips, each a link to the list filtered on it (`#/runs?tag=…` or `#/experiments?tag=…`). */
export function tagLinks(tags, listPath) {
  return (tags || []).map((tag) => h("a.tag.tag-link", { href: `#${listPath}?tag=${encodeURIComponent(tag)}`, title: `Everything tagged ${tag}`, dataset: { tag } }, tag));
}

/** A change of tags or notes, through the API; the object as it now stands, or null when refused (said in a toast). */
async function send(path, options) {
  try {
    return await api(path, options);
  } catch (err) {
    toast(err.message, "error", 8000);
    return null;
  }
}

/**
 * The panel: { node, update(object) }. `kind` is "runs" or "experiments"; onChange(object) gets the
 * object as the API answered a change. A newer object (a live update) repaints the tags, and the notes
 * unless they are being edited.
 */
export function tagsNotesPanel(initial, { kind, onChange }) {
  let current = initial;
  let savedNotes = initial.notes || "";
  const base = `/api/${kind}/${initial.id}`;
  const listPath = `/${kind}`;
  const chips = h("span.tag-chips");
  const applied = (answer) => { if (answer) { current = answer; paintTags(); onChange?.(answer); } return answer; };
  const addTag = async (tag) => applied(await send(`${base}/tags`, { method: "POST", body: { tag } }));
  const removeTag = async (tag) => applied(await send(`${base}/tags/${encodeURIComponent(tag)}`, { method: "DELETE" }));
  const input = tagInput({ title: "Letters, digits, spaces and _ . : - / (40 at most); Enter adds it", dataset: { input: "tag" }, onTag: addTag });
  const addButton = h("button.small", { type: "button", dataset: { action: "add-tag" }, onclick: () => {
    const text = input.value.trim();
    input.value = "";
    if (text) addTag(text);
  } }, "Add");

  const notes = h("textarea.notes", { rows: 4, maxlength: MAX_NOTES, dataset: { input: "notes" }, spellcheck: true,
    placeholder: "Notes: what this is for, what went wrong, what to try next… (plain text)" });
  notes.value = savedNotes;
  const counter = h("span.faint.nowrap");
  const saveButton = h("button.small.primary", { type: "button", dataset: { action: "save-notes" }, onclick: saveNotes }, "Save notes");
  const revertButton = h("button.small", { type: "button", onclick: () => { notes.value = savedNotes; paintNotes(); } }, "Revert");
  notes.addEventListener("input", paintNotes);
  notes.addEventListener("keydown", (event) => { if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) saveNotes(); });

  function paintTags() {
    chips.replaceChildren(...(current.tags || []).map((tag) => h("span.tag-chip", { dataset: { tag } },
      h("a", { href: `#${listPath}?tag=${encodeURIComponent(tag)}`, title: `Everything tagged ${tag}` }, tag),
      h("button", { type: "button", title: `Remove the tag ${tag}`, dataset: { action: "remove-tag" }, onclick: () => removeTag(tag) }, "×"))));
    if (!(current.tags || []).length) chips.append(h("span.faint", "no tags"));
  }

  function paintNotes() {
    const dirty = notes.value !== savedNotes;
    saveButton.disabled = !dirty;
    revertButton.classList.toggle("hidden", !dirty);
    setText(counter, dirty ? `unsaved · ${notes.value.length.toLocaleString()} / ${MAX_NOTES.toLocaleString()}` : savedNotes ? "saved" : "");
  }

  async function saveNotes() {
    if (notes.value === savedNotes) return;
    const answer = applied(await send(base, { method: "PATCH", body: { notes: notes.value } }));
    if (!answer) return;
    savedNotes = answer.notes || "";
    notes.value = savedNotes;
    paintNotes();
    toast("Notes saved");
  }

  const node = h("div.panel.tags-notes", { dataset: { panel: "tags-notes" } },
    h("div.tags-row", h("span.muted", "Tags"), chips, input, addButton),
    notes, h("div.notes-actions", saveButton, revertButton, counter));
  paintTags();
  paintNotes();
  return {
    node,
    update(next) {
      if (!next || (next.tags === undefined && next.notes === undefined)) return;
      if (JSON.stringify(next.tags) !== JSON.stringify(current.tags)) { current = { ...current, tags: next.tags }; paintTags(); }
      // A newer text from elsewhere replaces the shown one only while nothing typed here is unsaved.
      if (next.notes !== undefined && next.notes !== savedNotes && notes.value === savedNotes) {
        savedNotes = next.notes;
        notes.value = savedNotes;
        paintNotes();
      }
    },
  };
}
