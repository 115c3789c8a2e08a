"""Bodies an attacker (or a broken client) sends: invalid UTF-8, lone UTF-16
surrogates in values and keys, bodies over the size limit with and without a
``Content-Length``, unknown paths and methods. Every one gets a 4xx in the one JSON
error shape, is logged, and leaves the server logging what follows."""

from __future__ import annotations

import gzip
import io
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from flask import Flask
from gunicorn.http.errors import InvalidChunkSize
from werkzeug.test import TestResponse

from serving.json_body import parse_json
from tests.processes import Process
from tests.serving.conftest import LogReader
from watchkeeper.errors import MAX_FIELD_CHARS, BadRequest, clipped

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SURROGATE = b"\\ud800"  # a JSON escape of a lone high surrogate: not a Unicode character
_json = {"Content-Type": "application/json"}


@pytest.fixture
def hostile_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(admin_token=TOKEN)


def _assert_error_shape(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.json
    assert set(body) == {"error", "request_id"}
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def _predict_body(record: dict[str, Any], *, key: str, value: Any) -> bytes:
    """``{"features": record}`` with one field replaced; ``@`` marks a surrogate."""
    features = {k: v for k, v in record.items() if k != key}
    features[key] = value
    return orjson.dumps({"features": features}).replace(b"@", SURROGATE)


def _cases(record: dict[str, Any]) -> dict[str, tuple[bytes, str | None, str]]:
    """name -> (body, field the error names or None, word the message must hold)."""
    return {
        "surrogate-in-value": (
            _predict_body(record, key="Neighborhood", value="North@"),
            "features.Neighborhood",
            "surrogate",
        ),
        "surrogate-in-key": (
            _predict_body(record, key="@Colour", value="red"),
            "features.\\ud800Colour",
            "surrogate",
        ),
        "surrogate-nested-in-batch": (
            orjson.dumps({"instances": [record, {**record, "Neighborhood": "a@b"}]}).replace(
                b"@", SURROGATE
            ),
            "instances[1].Neighborhood",
            "surrogate",
        ),
        "surrogate-next-to-nan": (
            # NaN sends parsing down the lenient path that used to let surrogates in
            _predict_body(record, key="Neighborhood", value="@").replace(
                b'"Lot_Area":' + str(record["Lot_Area"]).encode(), b'"Lot_Area":NaN'
            ),
            "features.Neighborhood",
            "surrogate",
        ),
        "low-surrogate-alone": (
            _predict_body(record, key="Neighborhood", value="@").replace(SURROGATE, b"\\udc00"),
            "features.Neighborhood",
            "surrogate",
        ),
        "invalid-utf8": (
            orjson.dumps({"features": {**record, "Neighborhood": "XX"}}).replace(
                b"XX", b"\xff\xfe"
            ),
            None,
            "UTF-8",
        ),
        "utf8-encoded-surrogate": (
            orjson.dumps({"features": {**record, "Neighborhood": "XX"}}).replace(
                b"XX", b"\xed\xa0\x80"
            ),
            None,
            "UTF-8",
        ),
    }


CASES = [
    "surrogate-in-value",
    "surrogate-in-key",
    "surrogate-nested-in-batch",
    "surrogate-next-to-nan",
    "low-surrogate-alone",
    "invalid-utf8",
    "utf8-encoded-surrogate",
]


@pytest.mark.parametrize("case", CASES)
def test_predict_rejects_text_that_is_not_unicode_with_400_naming_it(
    hostile_app: Flask,
    read_log: Callable[[Flask], LogReader],
    record: dict[str, Any],
    case: str,
) -> None:
    body, field, word = _cases(record)[case]
    client = hostile_app.test_client()

    response = client.post("/predict", data=body, content_type="application/json")

    error = _assert_error_shape(response, 400, "bad_request")
    assert word in error["message"]
    if field is not None:
        assert [d["field"] for d in error["details"]] == [field]
        assert word in error["details"][0]["problem"]
    # The rejection is logged and the log keeps taking what follows.
    after = client.post("/predict", json={"features": record})
    assert after.status_code == 200
    logged = {r["request_id"]: r for r in read_log(hostile_app).requests()}
    assert logged[response.json["request_id"]]["status_code"] == 400
    assert logged[response.json["request_id"]]["error"] == error
    assert logged[after.json["request_id"]]["status_code"] == 200


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/feedback", b'{"id": "a\\ud800", "actual": 1}', "id"),
        ("/feedback", b'{"items": [{"id": "a", "actual": 1, "\\udfff": 2}]}', "items[0].\\udfff"),
        ("/admin/retrain", b'{"reason": "\\ud800"}', "reason"),
        ("/admin/rollback", b'{"\\ud800": "v1"}', "\\ud800"),
        ("/alerts", b'{"alerts": [{"labels": {"alertname": "\\udbff"}}]}', None),
        ("/feedback", b'{"id": "\xc3\x28", "actual": 1}', None),
        ("/alerts", b'{"alerts": [], "x": "\xed\xbf\xbf"}', None),
    ],
    ids=[
        "feedback-value",
        "feedback-nested-key",
        "retrain-value",
        "rollback-key",
        "alerts-nested-value",
        "feedback-invalid-utf8",
        "alerts-encoded-surrogate",
    ],
)
def test_every_json_endpoint_rejects_text_that_is_not_unicode(
    hostile_app: Flask, path: str, body: bytes, field: str | None
) -> None:
    response = hostile_app.test_client().post(
        path, data=body, content_type="application/json", headers=AUTH
    )

    error = _assert_error_shape(response, 400, "bad_request")
    if field is None:
        assert "surrogate" in error["message"] or "UTF-8" in error["message"]
    else:
        assert [d["field"] for d in error["details"]] == [field]


def test_a_surrogate_pair_is_a_character_and_is_accepted(
    hostile_app: Flask, record: dict[str, Any]
) -> None:
    body = _predict_body(record, key="Neighborhood", value="\U0001f3e0").replace(
        "\U0001f3e0".encode(), b"\\ud83c\\udfe0"
    )

    response = hostile_app.test_client().post(
        "/predict", data=body, content_type="application/json"
    )

    assert response.status_code == 200  # an unseen category, predicted as missing


def test_body_over_the_limit_is_payload_too_large(
    make_app: Callable[..., Flask], record: dict[str, Any]
) -> None:
    app = make_app(max_request_bytes=4096)

    response = app.test_client().post("/predict", json={"instances": [record] * 10})

    error = _assert_error_shape(response, 413, "payload_too_large")
    assert "4096" in error["message"]


def _chunked(app: Flask, body: bytes, path: str = "/predict") -> TestResponse:
    """POST ``body`` as a server hands over a chunked request: no Content-Length, and
    the server ends the stream (``wsgi.input_terminated``, as gunicorn sets it)."""
    return app.test_client().post(
        path,
        input_stream=io.BytesIO(body),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_chunked_body_over_the_limit_is_413_not_a_json_error(
    make_app: Callable[..., Flask],
    read_log: Callable[[Flask], LogReader],
    record: dict[str, Any],
) -> None:
    app = make_app(max_request_bytes=4096)

    response = _chunked(app, orjson.dumps({"instances": [record] * 10}))

    error = _assert_error_shape(response, 413, "payload_too_large")
    assert "4096" in error["message"]
    [row] = read_log(app).requests()
    assert (row["status_code"], row["body"]) == (413, None)


@pytest.mark.parametrize("padding", ["under", "exactly-at"])
def test_chunked_body_within_the_limit_is_read_whole(
    make_app: Callable[..., Flask], record: dict[str, Any], padding: str
) -> None:
    body = orjson.dumps({"features": record})
    limit = len(body) + (100 if padding == "under" else 0)
    app = make_app(max_request_bytes=limit)

    response = _chunked(app, body)

    assert response.status_code == 200, response.json


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/no-such-path", 404, "not_found"),
        ("get", "/predict", 405, "method_not_allowed"),
        ("delete", "/feedback", 405, "method_not_allowed"),
        ("post", "/healthz", 405, "method_not_allowed"),
    ],
)
def test_routing_errors_use_the_json_error_shape(
    hostile_app: Flask, method: str, path: str, status: int, code: str
) -> None:
    response = getattr(hostile_app.test_client(), method)(path)

    _assert_error_shape(response, status, code)
    if status == 405:
        assert response.headers["Allow"]


@pytest.fixture
def small_server(start_watchkeeper: Callable[..., Process]) -> Iterator[Process]:
    yield start_watchkeeper("serve", WATCHKEEPER_WORKERS="1", WATCHKEEPER_MAX_REQUEST_BYTES="4096")


@pytest.mark.integration
def test_gunicorn_answers_an_oversized_chunked_body_with_413(
    small_server: Process, record: dict[str, Any]
) -> None:
    def chunks(body: bytes) -> Iterator[bytes]:  # a generator body is sent chunked
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    big = small_server.post(
        "/predict", data=chunks(orjson.dumps({"instances": [record] * 10})), headers=_json
    )
    small = small_server.post(
        "/predict", data=chunks(orjson.dumps({"features": record})), headers=_json
    )

    assert big.status_code == 413, big.text
    assert big.json()["error"]["code"] == "payload_too_large"
    assert small.status_code == 200, small.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/predict"), ("PUT", "/feedback"), ("PROPFIND", "/predict"), ("DELETE", "/feedback")],
)
def test_a_method_the_logged_paths_do_not_take_is_405_and_logged(
    hostile_app: Flask,
    read_log: Callable[[Flask], LogReader],
    record: dict[str, Any],
    method: str,
    path: str,
) -> None:
    client = hostile_app.test_client()

    response = client.open(path, method=method, headers={"X-Request-ID": "client-405"})

    error = _assert_error_shape(response, 405, "method_not_allowed")
    assert response.headers["Allow"]
    [row] = read_log(hostile_app).requests()
    assert (row["request_id"], row["endpoint"], row["method"]) == (
        response.json["request_id"],
        path,
        method,
    )
    assert (row["status_code"], row["n_items"], row["error"]) == (405, 0, error)
    assert row["client_request_id"] == "client-405"


@pytest.mark.parametrize("path", ["/predict", "/feedback"])
def test_options_is_204_with_allow_and_no_body_or_content_type_and_logged_as_such(
    hostile_app: Flask, read_log: Callable[[Flask], LogReader], path: str
) -> None:
    response = hostile_app.test_client().options(path, headers={"X-Request-ID": "client-opt"})

    assert response.status_code == 204
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    [row] = read_log(hostile_app).requests()
    assert (row["request_id"], row["endpoint"], row["method"]) == (
        response.headers["X-Request-ID"],
        path,
        "OPTIONS",
    )
    assert (row["status_code"], row["n_items"], row["error"]) == (204, 0, None)
    assert row["client_request_id"] == "client-opt"


@pytest.mark.parametrize(
    ("sent", "logged"),
    [
        ("café-😀".encode(), "café-😀"),  # UTF-8, as clients send it
        (b"id-\xff\xfe", "id-\\xff\\xfe"),  # not UTF-8: its bytes, visibly
    ],
)
def test_a_client_request_id_is_logged_as_the_text_the_client_sent(
    hostile_app: Flask, read_log: Callable[[Flask], LogReader], sent: bytes, logged: str
) -> None:
    """WSGI hands header bytes over as Latin-1 text: taken as it is, UTF-8 was logged
    as mojibake (``cafÃ©``)."""
    headers = {"X-Request-ID": sent.decode("latin-1")}  # what the server gives the app
    hostile_app.test_client().post("/predict", data=b"{", headers=headers)

    [row] = read_log(hostile_app).requests()
    assert row["client_request_id"] == logged


class _RefusingStream(io.BytesIO):
    """A body stream that fails as gunicorn's chunked reader does on bad framing."""

    def read(self, _size: int | None = -1) -> bytes:
        raise InvalidChunkSize(b"zz")

    readinto = read1 = readline = read  # type: ignore[assignment]


@pytest.mark.parametrize("path", ["/predict", "/feedback", "/admin/retrain"])
def test_a_body_gunicorn_cannot_parse_is_400_not_500(
    hostile_app: Flask, read_log: Callable[[Flask], LogReader], path: str
) -> None:
    response = hostile_app.test_client().post(
        path,
        input_stream=_RefusingStream(),
        content_type="application/json",
        headers=AUTH,
        environ_overrides={"wsgi.input_terminated": True},
    )

    error = _assert_error_shape(response, 400, "bad_request")
    assert "chunk" in error["message"]
    if path != "/admin/retrain":
        [row] = read_log(hostile_app).requests()
        assert (row["status_code"], row["error"], row["body"]) == (400, error, None)


@pytest.mark.parametrize(
    ("method", "content_type", "status"),
    [("POST", "text/csv", 415), ("GET", "application/json", 405)],
)
def test_a_body_gunicorn_cannot_parse_read_only_for_the_log_keeps_the_first_error(
    hostile_app: Flask,
    read_log: Callable[[Flask], LogReader],
    method: str,
    content_type: str,
    status: int,
) -> None:
    # The view refuses the request without reading its body; the log reads a rejected
    # request's body, and gunicorn's parse error there once made the answer a 500.
    response = hostile_app.test_client().open(
        "/predict",
        method=method,
        input_stream=_RefusingStream(),
        content_type=content_type,
        environ_overrides={"wsgi.input_terminated": True},
    )

    assert response.status_code == status, response.get_data(as_text=True)
    [row] = read_log(hostile_app).requests()
    assert (row["status_code"], row["body"]) == (status, None)


def test_a_number_too_long_to_convert_is_422_naming_it_without_python_internals(
    hostile_app: Flask, record: dict[str, Any]
) -> None:
    client = hostile_app.test_client()
    for digits in (400, 5000):
        body = _predict_body(record, key="Lot_Area", value=0).replace(
            b'"Lot_Area":0', b'"Lot_Area":' + b"9" * digits
        )

        response = client.post("/predict", data=body, content_type="application/json")

        error = _assert_error_shape(response, 422, "validation_error")
        assert "number is too large" in error["message"] or error["details"] == [
            {"field": "features.Lot_Area", "problem": "number is too large"}
        ]
        assert "sys." not in error["message"] and "int_max" not in error["message"]


@pytest.mark.parametrize("encoding", ["gzip", "br", "identity, gzip"])
@pytest.mark.parametrize("path", ["/predict", "/feedback"])
def test_a_content_encoding_is_refused_with_415_naming_it(
    hostile_app: Flask, record: dict[str, Any], path: str, encoding: str
) -> None:
    # A plain body labelled gzip was once read as plain, a gzip one as "not UTF-8".
    for body in (orjson.dumps({"features": record}), gzip.compress(b'{"id": "x", "actual": 1}')):
        response = hostile_app.test_client().post(
            path, data=body, content_type="application/json", headers={"Content-Encoding": encoding}
        )

        error = _assert_error_shape(response, 415, "unsupported_media_type")
        assert f"Content-Encoding {encoding!r}" in error["message"]
        # what would be accepted (RFC 9110 15.5.16): the body as it is
        assert response.headers["Accept-Encoding"] == "identity"


def test_content_encoding_identity_is_a_body_as_sent(
    hostile_app: Flask, record: dict[str, Any]
) -> None:
    response = hostile_app.test_client().post(
        "/predict", json={"features": record}, headers={"Content-Encoding": "Identity"}
    )

    assert response.status_code == 200, response.json


@pytest.mark.parametrize("charset", ["utf-16", "latin-1", "bogus", '"iso-8859-1"'])
@pytest.mark.parametrize("path", ["/predict", "/feedback", "/admin/retrain"])
def test_a_json_body_in_another_charset_than_utf8_is_415_naming_it(
    hostile_app: Flask, record: dict[str, Any], path: str, charset: str
) -> None:
    response = hostile_app.test_client().post(
        path,
        data=orjson.dumps({"features": record}),
        content_type=f"application/json; charset={charset}",
        headers=AUTH,
    )

    error = _assert_error_shape(response, 415, "unsupported_media_type")
    assert f"charset {charset.strip(chr(34))!r}" in error["message"]
    assert "UTF-8" in error["message"]
    assert "Accept-Encoding" not in response.headers  # no content coding was refused


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", '"utf-8"'])
def test_a_json_body_declared_utf8_is_accepted(
    hostile_app: Flask, record: dict[str, Any], charset: str
) -> None:
    response = hostile_app.test_client().post(
        "/predict",
        data=orjson.dumps({"features": record}),
        content_type=f"application/json; charset={charset}",
    )

    assert response.status_code == 200, response.json


def _compact(payload: Any) -> bytes:
    """JSON without spaces, integers of any width as they are (orjson refuses some)."""
    return json.dumps(payload, separators=(",", ":")).encode()


def _repeat_first(body: bytes, key: str, hidden: bytes) -> bytes:
    """``body`` with ``key`` sent twice: first holding ``hidden``, then its own value."""
    name = f'"{key}":'.encode()
    return body.replace(name, name + hidden + b"," + name, 1)


# A value only the lenient parser reads, hidden by the same key sent again after it.
# Either parser keeps the last value, so validation never saw the first: these were
# answered 200, and the log then held a row no reader could decode (a columnar body's
# text is journaled as sent) or set the entry aside (the last value an integer past 64
# bits, which the lenient parser read as an int).
REPEATED = {
    "columns-nan": ("columns", "Lot_Area", b"[NaN]"),
    "columns-out-of-range": ("columns", "Lot_Area", b"[1e400]"),
    "columns-surrogate": ("columns", "Street", b'["' + SURROGATE + b'"]'),
    "record-nan-then-a-wide-integer": ("features", "Lot_Area", b"NaN"),
    "record-surrogate": ("features", "Street", b'"' + SURROGATE + b'"'),
}


@pytest.mark.parametrize("case", sorted(REPEATED))
def test_a_key_repeated_to_hide_what_orjson_refuses_is_400_naming_it_and_logged(
    hostile_app: Flask,
    read_log: Callable[[Flask], LogReader],
    record: dict[str, Any],
    case: str,
) -> None:
    form, key, hidden = REPEATED[case]
    sent = {**record, "Lot_Area": 10**20} if case.endswith("wide-integer") else record
    payload = {"columns": {k: [v] for k, v in sent.items()}} if form == "columns" else {form: sent}
    body = _repeat_first(_compact(payload), key, hidden)

    response = hostile_app.test_client().post(
        "/predict", data=body, content_type="application/json"
    )

    error = _assert_error_shape(response, 400, "bad_request")
    assert f"repeats a key in one object, at {form}.{key}" in error["message"]
    assert error["details"] == [
        {"field": f"{form}.{key}", "problem": "appears 2 times in one object"}
    ]
    [row] = read_log(hostile_app).requests()
    assert (row["status_code"], row["n_items"], row["body"]) == (400, 0, body.decode())


def test_a_key_repeated_in_a_body_orjson_reads_keeps_its_last_value_in_the_log_too(
    hostile_app: Flask, read_log: Callable[[Flask], LogReader], record: dict[str, Any]
) -> None:
    body = _repeat_first(
        _compact({"columns": {k: [v] for k, v in record.items()}}), "Lot_Area", b'["ignored"]'
    )

    response = hostile_app.test_client().post(
        "/predict", data=body, content_type="application/json"
    )

    assert response.status_code == 200, response.json
    reader = read_log(hostile_app)
    [logged] = reader.predictions()
    assert logged["features"] == record  # the value the model was given, not the hidden one
    assert orjson.loads(reader.features_text(response.json["request_id"]))["Lot_Area"] == [
        record["Lot_Area"]
    ]


def test_every_repeated_key_is_named_by_its_path_up_to_a_hundred() -> None:
    nested = b'{"instances":[{"a":1},{"a":NaN,"b":{"c":1,"c":2},"a":3}]}'
    with pytest.raises(BadRequest) as refused:
        parse_json(nested)
    assert [(p.field, p.problem) for p in refused.value.details] == [
        ("instances[1].a", "appears 2 times in one object"),
        ("instances[1].b.c", "appears 2 times in one object"),
    ]

    many = b"[NaN," + b",".join(b'{"k%d":1,"k%d":2}' % (i, i) for i in range(150)) + b"]"
    with pytest.raises(BadRequest) as refused:
        parse_json(many)
    assert len(refused.value.details) == 100
    assert refused.value.details[-1].field == "[100].k99"


def test_a_repeated_key_in_a_body_too_deep_to_walk_is_400_all_the_same() -> None:
    deep = b'[{"a":NaN,"a":1},' + b"[" * 5000 + b"]" * 5000 + b"]"

    with pytest.raises(BadRequest) as refused:
        parse_json(deep)

    assert refused.value.message == "body repeats a key in one object: send each key once"
    assert refused.value.details == []


@pytest.mark.parametrize(
    ("text", "number"),
    [
        (b"18446744073709551615", 18446744073709551615),
        (b"-9223372036854775808", -9223372036854775808),
        (b"18446744073709551616", 1.8446744073709552e19),
        (b"-9223372036854775809", -9.223372036854776e18),
    ],
)
def test_the_lenient_parser_reads_integers_as_orjson_does(text: bytes, number: float) -> None:
    """A body with a NaN goes to the standard library's parser: the numbers it returns
    must be what orjson returns (past 64 bits a float), not wider ints that validation
    passes and the journal's orjson then cannot write."""
    [nan, parsed] = parse_json(b"[NaN," + text + b"]")

    assert math.isnan(nan)
    assert parsed == number and type(parsed) is type(number)
    assert orjson.loads(text) == parsed and type(orjson.loads(text)) is type(parsed)


def test_an_integer_past_a_floats_range_stays_one_for_validation_to_call_too_large() -> None:
    [_, parsed] = parse_json(b"[NaN,1" + b"0" * 400 + b"]")

    assert parsed == 10**400


@pytest.mark.parametrize("form", ["features", "columns"])
def test_an_error_naming_huge_keys_is_bounded_in_the_answer_and_the_log(
    hostile_app: Flask, read_log: Callable[[Flask], LogReader], record: dict[str, Any], form: str
) -> None:
    """Unknown keys of 100,000 characters each: the error named every one in full, in
    its message and in each problem, and was answered and logged whole (a 14.5 MB body
    of them made a 17 MB answer and a 17 MB ``error`` in its log row)."""
    keys = [f"{i}{'k' * 100_000}" for i in range(8)]
    extra = {key: 1 for key in keys}
    payload = (
        {"features": {**record, **extra}}
        if form == "features"
        else {"columns": {k: [v] for k, v in {**record, **extra}.items()}}
    )

    response = hostile_app.test_client().post("/predict", json=payload)

    error = _assert_error_shape(response, 422, "validation_error")
    assert len(response.get_data()) < 20_000
    assert [d["field"][: len(form) + 2] for d in error["details"]] == [
        f"{form}.{i}" for i in range(8)
    ]
    assert [d["field"] for d in error["details"]] == [
        clipped(f"{form}.{key}", MAX_FIELD_CHARS) for key in keys
    ]
    assert error["details"][0]["field"].endswith(
        f"…[{len(form) + 1 + 100_001 - 256:,} more characters]"
    )
    [row] = read_log(hostile_app).requests()
    assert row["status_code"] == 422
    assert len(orjson.dumps(row["error"])) < 20_000


@pytest.mark.parametrize("depth", [1025, 100_000])
def test_a_body_nested_too_deeply_is_400_without_python_internals(
    hostile_app: Flask, depth: int
) -> None:
    body = b'{"features":' + b"[" * depth + b"]" * depth + b"}"

    response = hostile_app.test_client().post(
        "/predict", data=body, content_type="application/json"
    )

    error = _assert_error_shape(response, 400, "bad_request")
    # it said "maximum recursion depth exceeded while decoding a JSON array …"
    assert error["message"] == "body is nested too deeply to read (arrays and objects)"
