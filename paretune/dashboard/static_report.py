"""The experiment page as one self-contained HTML file: data, plotly.js, styles and script inlined.

It opens from disk or object storage with no server and no network, to share or keep beside a
sweep's other artifacts (`paretune report EXPERIMENT --html out.html`, the report flow's `html`).
"""

from __future__ import annotations


import posixpath
from datetime import datetime, timezone
from importlib.resources import files

import orjson

from paretune.dashboard.app import _script_json, plotly_js_path, report_importances, templates
from paretune.dashboard.payload import experiment_payload, importance_payload
from paretune.storage import DuckDBStorage, Storage, StorageError
from paretune.storage.artifacts import ArtifactStore
from paretune.storage.report import ExperimentReport, experiment_report


def static_report_html(report: ExperimentReport) -> str:
    """The experiment page of `report`, with everything it needs inside the file."""
    static = files("paretune.dashboard") / "static"
    config = {"live": False, "runUrl": None}
    return templates.get_template("experiment.html").render(
        static=True,
        title=report.experiment.name,
        experiment_id=report.experiment.id,
        db_path=f"experiment {report.experiment.id}",
        written_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        inline_css=(static / "dashboard.css").read_text(),
        inline_js=(static / "dashboard.js").read_text().replace("</script", "<\\/script"),
        plotly_js=plotly_js_path().read_text().replace("</script", "<\\/script"),
        config_json=_script_json(config),
        data_json=orjson.dumps(experiment_payload(report, importance_payload(report_importances(report))))
        .decode().replace("</", "<\\/"),
    )


def write_report_file(storage: Storage, experiment: int | str, url: str) -> str:
    """Write the static report of `experiment` from an open store to `url`; return where it went."""
    report = experiment_report(storage, experiment)
    html = static_report_html(report)
    return put_text(url, html)


def write_static_report(db: str, experiment: int | str, url: str) -> str:
    """Write the static report of `experiment` (id or name) in the DuckDB file `db` to `url`
    (a local path or s3://bucket/key.html); return the path or URL written.

    The BERT demo calls this at its end to leave the frontier picture beside the database.
    """
    with DuckDBStorage(db, read_only=True) as storage:
        return write_report_file(storage, experiment, url)


def put_text(url: str, text: str) -> str:
    """Write `text` at a local path or an s3:// URL through the artifact store."""
    root, name = posixpath.split(url.rstrip("/"))
    if not name:
        raise StorageError(f"report destination {url!r} must name a file, e.g. reports/experiment.html")
    return ArtifactStore(root or ".").put_bytes(name, text.encode())
