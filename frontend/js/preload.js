// A run, an experiment or a comparison opened by its URL draws charts at once: fetch and compile plotly.js (4.8 MB)
// now, while the app's modules load, instead of after them. charts.js reuses this promise.
// A file, not an inline script: the Content-Security-Policy runs scripts from the lab's files only.
if (/^#\/((runs|experiments)\/\d+|compare\b)/.test(location.hash)) {
  window.plotlyLoading = new Promise((resolve, reject) => {
    const script = Object.assign(document.createElement("script"), { src: "/vendor/plotly.min.js", async: true });
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => reject(new Error("plotly.js could not be loaded from /vendor/plotly.min.js"));
    document.head.append(script);
  });
  window.plotlyLoading.catch(() => {});   // reported by the chart that awaits it
}
