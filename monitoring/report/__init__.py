"""``watchkeeper report``: one self-contained HTML page of what the monitor saw in a
period, for a person without Grafana.

- :mod:`~monitoring.report.records`: the typed records between the modules;
- :mod:`~monitoring.report.gather`: reads them from the log, the monitor's stored
  results and the registry (with :mod:`stored_results`, :mod:`retraining`,
  :mod:`versions`, :mod:`drifted`, :mod:`ood_rows`, :mod:`log_rows`);
- :mod:`~monitoring.report.charts` (on :mod:`svg`): inline SVG charts from records;
- :mod:`~monitoring.report.page`: the HTML page (counts in words from :mod:`wording`,
  which also writes the command's one-line summary).
"""
