"""What a local run refuses before it starts anything, each as one line naming the
setting to change: a port two components would share, a port another process holds,
an alert token file Alertmanager could not call ``/alerts`` with."""

from __future__ import annotations

from pathlib import Path

from watchkeeper.local_run.layout import Layout, Listener


class Refused(Exception):
    """A setting the run cannot start with: printed as one line."""


def check_ports(plan: Layout) -> None:
    """Each component on a port of its own, and none held by another process. Two on
    one port would have the loser exit after the winner answered."""
    owners: dict[int, Listener] = {}
    for listener in plan.listeners():
        first = owners.setdefault(listener.port, listener)
        if first is not listener:
            raise Refused(
                f"{first.setting} and {listener.setting} are both {listener.port}: the "
                f"{first.component} and the {listener.component} cannot share a port; "
                "set one of them to another port"
            )
    for listener in plan.listeners():
        if listener.in_use():
            raise Refused(
                f"port {listener.port} ({listener.component}) is already in use: stop what "
                f"holds it, or set {listener.setting} to another port"
            )


def check_alert_token_file(path: Path, admin_token: str) -> None:
    """The file Alertmanager sends as its bearer token holds the server's admin token:
    otherwise every alert routed to retraining is refused, and only Alertmanager's log
    would say so."""
    setting = "WATCHKEEPER_ALERT_TOKEN_FILE"
    try:
        # Alertmanager trims the file's white space, as this does.
        held = path.read_text().strip()
    except OSError as exc:
        raise Refused(
            f"{setting} {path}: cannot read it ({exc.strerror or exc}); Alertmanager sends the "
            "admin token from it: point it at a file holding WATCHKEEPER_ADMIN_TOKEN, or unset it"
        ) from exc
    except UnicodeDecodeError as exc:
        raise Refused(f"{setting} {path}: not a text file holding a token") from exc
    if held != admin_token:
        raise Refused(
            f"{setting} {path} does not hold WATCHKEEPER_ADMIN_TOKEN: the server would refuse "
            "Alertmanager's calls to /alerts; write that token there, or unset the setting"
        )
