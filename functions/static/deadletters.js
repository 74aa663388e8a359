// Dead letters: events the control plane could never act on (a wrong type, a subject that is not a blob,
// a queue message that failed every attempt), each with the reason; the same list as `aztrain deadletters`.
"use strict";

(() => {
  const { h, api, poll, table, time, emptyRow } = window.AzTrain;
  const REFRESH_MS = 5000;
  const PAGE = 200;

  window.AzTrain.views.deadletters = (root) => {
    const list = table("Events given up on, oldest first", ["When", "Function", "Event", "Type", "Subject", "Reason"]);
    root.append(h("h1", {}, "Dead letters"), list.element);
    return poll(async () => {
      const { deadletters } = await api.get("deadletters", { limit: PAGE });
      list.body.replaceChildren(
        ...(deadletters.length
          ? deadletters.map((d) =>
              list.row({ "data-event": d.event_id }, time(d.at), d.function, d.event_id, d.event_type, d.subject, d.reason),
            )
          : [emptyRow(6, "No dead letters: every event was acted on.")]),
      );
    }, REFRESH_MS);
  };
})();
