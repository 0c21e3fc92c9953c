// gridctl ui: sortable tables, and pages of active runs that keep themselves current.
// Served by gridctl itself; no library, nothing fetched from elsewhere.
"use strict";
(function () {
  const POLL_MS = 2000;
  const sorted = {}; // table id -> [column, direction]

  function cellKey(row, column) {
    const text = row.cells[column].dataset.value;
    const number = Number(text);
    return text !== "" && !Number.isNaN(number) ? [0, number] : [text === "" ? -1 : 1, text];
  }

  function compare(a, b) {
    if (a[0] !== b[0]) return a[0] - b[0];
    return a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
  }

  function sortTable(table) {
    const order = sorted[table.id];
    if (!order) return;
    const [column, direction] = order;
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((a, b) => direction * compare(cellKey(a, column), cellKey(b, column)));
    rows.forEach((row) => body.appendChild(row));
    table.querySelectorAll("th").forEach((th) => {
      th.classList.toggle("asc", Number(th.dataset.sort) === column && direction > 0);
      th.classList.toggle("desc", Number(th.dataset.sort) === column && direction < 0);
    });
  }

  document.addEventListener("click", (event) => {
    const th = event.target.closest("table.sortable th[data-sort]");
    if (!th) return;
    const table = th.closest("table");
    const column = Number(th.dataset.sort);
    const previous = sorted[table.id];
    sorted[table.id] = [column, previous && previous[0] === column ? -previous[1] : 1];
    sortTable(table);
  });

  function showLogEnd() {
    const log = document.getElementById("log");
    if (log) log.scrollTop = log.scrollHeight;
  }

  async function refresh() {
    if (document.body.dataset.active !== "true") return;
    try {
      const reply = await fetch(location.href, { credentials: "same-origin" });
      if (reply.ok) {
        const fresh = new DOMParser().parseFromString(await reply.text(), "text/html");
        document.querySelector("main").replaceWith(fresh.querySelector("main"));
        document.body.dataset.active = fresh.body.dataset.active;
        document.querySelectorAll("table.sortable").forEach(sortTable);
        showLogEnd();
      }
    } finally {
      setTimeout(refresh, POLL_MS);
    }
  }

  showLogEnd();
  setTimeout(refresh, POLL_MS);
})();
