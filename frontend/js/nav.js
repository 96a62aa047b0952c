// The hash route's path and query, shared by the router and the pages.

export function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/runs";
  const [path, qs = ""] = raw.split("?");
  return { path, query: new URLSearchParams(qs) };
}

/** Replace the hash's query without re-rendering the page (filters, pagination). */
export function replaceQuery(query) {
  const { path } = parseHash();
  const qs = query.toString();
  history.replaceState(null, "", `#${path}${qs ? `?${qs}` : ""}`);
}
