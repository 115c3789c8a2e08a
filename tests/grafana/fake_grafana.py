"""A local HTTP server that enforces Grafana's documented HTTP API contract for the
calls provisioning makes (paths, methods, bearer auth, payload shape, conflict and
overwrite semantics). Grafana cannot run on these machines; this stands in for it."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, jsonify, redirect, request
from werkzeug.serving import make_server


def create_fake_grafana(token: str) -> tuple[Flask, dict[str, Any]]:
    app = Flask("fake-grafana")
    state: dict[str, Any] = {"folders": {}, "datasources": {}, "dashboards": {}, "calls": []}

    @app.before_request
    def _auth() -> Any:
        state["calls"].append((request.method, request.path))
        if request.headers.get("Authorization") != f"Bearer {token}":
            return jsonify(message="Unauthorized"), 401
        if request.method in ("POST", "PUT") and not request.is_json:
            return jsonify(message="bad request data"), 400
        return None

    @app.get("/api/folders/<uid>")
    def get_folder(uid: str) -> Any:
        folder = state["folders"].get(uid)
        return (jsonify(folder), 200) if folder else (jsonify(message="folder not found"), 404)

    @app.post("/api/folders")
    def create_folder() -> Any:
        body = request.get_json()
        if not body.get("title"):
            return jsonify(message="folder title cannot be empty"), 400
        uid = body.get("uid")
        if uid in state["folders"]:
            return jsonify(message="a folder with the same uid already exists"), 409
        folder = {"uid": uid, "title": body["title"], "version": 1, "id": len(state["folders"]) + 1}
        state["folders"][uid] = folder
        return jsonify(folder), 200

    @app.put("/api/folders/<uid>")
    def update_folder(uid: str) -> Any:
        body = request.get_json()
        folder = state["folders"].get(uid)
        if folder is None:
            return jsonify(message="folder not found"), 404
        if not body.get("overwrite") and body.get("version") != folder["version"]:
            return jsonify(message="the folder has been changed by someone else"), 412
        folder.update(title=body.get("title", folder["title"]), version=folder["version"] + 1)
        return jsonify(folder), 200

    @app.get("/api/datasources/uid/<uid>")
    def get_datasource(uid: str) -> Any:
        source = state["datasources"].get(uid)
        return (jsonify(source), 200) if source else (jsonify(message="Data source not found"), 404)

    @app.post("/api/datasources")
    def create_datasource() -> Any:
        body = request.get_json()
        missing = [k for k in ("name", "type", "access", "url") if not body.get(k)]
        if missing:
            return jsonify(message=f"missing {missing}"), 400
        if any(s["name"] == body["name"] for s in state["datasources"].values()):
            return jsonify(message="data source with the same name already exists"), 409
        state["datasources"][body["uid"]] = {**body, "version": 1}
        return jsonify(message="Datasource added", datasource=body), 200

    @app.put("/api/datasources/uid/<uid>")
    def update_datasource(uid: str) -> Any:
        body = request.get_json()
        if uid not in state["datasources"]:
            return jsonify(message="Data source not found"), 404
        version = state["datasources"][uid]["version"] + 1
        state["datasources"][uid] = {**body, "version": version}
        return jsonify(message="Datasource updated"), 200

    @app.post("/api/dashboards/db")
    def save_dashboard() -> Any:
        body = request.get_json()
        dashboard = body.get("dashboard")
        if (
            not isinstance(dashboard, dict)
            or not dashboard.get("title")
            or not dashboard.get("uid")
        ):
            return jsonify(message="Dashboard title cannot be empty"), 400
        if body.get("folderUid") not in state["folders"]:
            return jsonify(message="folder not found"), 400
        existing = state["dashboards"].get(dashboard["uid"])
        if existing and not body.get("overwrite"):
            return jsonify(
                status="name-exists", message="A dashboard with the same uid already exists"
            ), 412
        version = existing["version"] + 1 if existing else 1
        state["dashboards"][dashboard["uid"]] = {
            "dashboard": dashboard,
            "folderUid": body["folderUid"],
            "version": version,
        }
        return jsonify(status="success", uid=dashboard["uid"], version=version), 200

    return app, state


def create_impostor(kind: str) -> tuple[Flask, dict[str, Any]]:
    """A server at Grafana's address that is not Grafana's API. ``html``: every request
    is answered 200 with a web page (another application); ``login_redirect``: every
    request is sent to a login page, as an authenticating proxy does; ``not_json``: 200
    ``application/json`` that is not JSON; ``empty_json``: 200 ``{}``."""
    app = Flask("impostor")
    state: dict[str, Any] = {"calls": []}

    @app.route("/login")
    def login() -> Any:
        state["calls"].append((request.method, request.path))
        return "<html>\n<body>Sign in</body></html>", 200, {"Content-Type": "text/html"}

    @app.route("/<path:path>", methods=["GET", "POST", "PUT"])
    def anything(path: str) -> Any:
        state["calls"].append((request.method, request.path))
        if kind == "html":
            return "<html>\n<body>Welcome</body></html>", 200, {"Content-Type": "text/html"}
        if kind == "login_redirect":
            return redirect("/login", 302)
        if kind == "not_json":
            return "not json", 200, {"Content-Type": "application/json"}
        return jsonify({}), 200

    return app, state


class FakeGrafana:
    def __init__(self, token: str, impostor: str = "") -> None:
        """Grafana's API taking ``token``; or, with ``impostor``, ``create_impostor``'s
        server of that kind."""
        self.app, self.state = create_impostor(impostor) if impostor else create_fake_grafana(token)
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
