"""Requests made by hand, without the SDK: signed per the ACS3 and v1
specifications by an independent signer below, then broken in small ways,
and carrying hostile parameter values under a valid signature."""

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import urllib.parse
import uuid

import pytest

import conftest

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def enc(text):
    """RFC 3986: only A-Z a-z 0-9 - _ . ~ stay as they are."""
    return urllib.parse.quote(text, safe="-_.~")


def now_utc(minutes=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def send(method, path_and_query, headers, body=b""):
    host, port = conftest.ENDPOINT.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    conn.putrequest(method, path_and_query, skip_host=True, skip_accept_encoding=True)
    for name, value in headers:
        conn.putheader(name, value)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), json.loads(data)


def acs3(
    user="secops",
    action="DescribeInternetOpenPort",
    query=(),
    raw_query=None,
    body=b"",
    extra_headers=(),
    unsigned_headers=(),
    secret=None,
    date=None,
    tamper=None,
):
    """Signs with ACS3-HMAC-SHA256 as the specification says; `tamper` may
    change (signed_headers, canonical, headers, raw_query) after signing."""
    key = conftest.USERS[user]["key"]
    secret = secret or conftest.USERS[user]["secret"]
    headers = {
        "host": conftest.ENDPOINT,
        "x-acs-action": action,
        "x-acs-version": "2017-12-07",
        "x-acs-date": date or now_utc(),
        "x-acs-signature-nonce": uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    if body:
        headers["content-type"] = "application/x-www-form-urlencoded"
    headers.update(dict(extra_headers))
    signed = sorted(headers)
    canonical_query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(query))
    canonical = "\n".join(
        [
            "POST",
            "/",
            canonical_query,
            "".join(f"{h}:{headers[h].strip()}\n" for h in signed),
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    signature = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    if raw_query is None:
        raw_query = urllib.parse.urlencode(list(query))
    state = {"signed": signed, "signature": signature, "headers": headers, "query": raw_query}
    if tamper:
        tamper(state)
    auth = (
        f"ACS3-HMAC-SHA256 Credential={key},SignedHeaders={';'.join(state['signed'])},"
        f"Signature={state['signature']}"
    )
    all_headers = list(state["headers"].items()) + list(unsigned_headers) + [("Authorization", auth)]
    path = "/?" + state["query"] if state["query"] else "/"
    return send("POST", path, all_headers, body)


def v1(user="secops", params=(), method="GET", secret=None, drop=(), override=()):
    key = conftest.USERS[user]["key"]
    secret = secret or conftest.USERS[user]["secret"]
    p = {
        "Action": "DescribeInternetOpenPort",
        "Version": "2017-12-07",
        "Format": "JSON",
        "AccessKeyId": key,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": now_utc(),
    }
    p.update(dict(params))
    p.update(dict(override))
    for k in drop:
        p.pop(k, None)
    canonical = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(p.items()))
    to_sign = f"{method}&{enc('/')}&{enc(canonical)}"
    sig = base64.b64encode(hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    p["Signature"] = sig
    return send(method, "/?" + urllib.parse.urlencode(p, quote_via=urllib.parse.quote), [("Host", conftest.ENDPOINT)])


def code(reply):
    status, _, body = reply
    return status, body.get("Code", "Success")


def test_a_hand_signed_acs3_request_is_answered():
    status, headers, body = acs3(query=[("Lang", "en"), ("ServiceNameFuzzy", "SQL")])
    assert status == 200, body
    assert [r["Port"] for r in body["DataList"]] == [3306]
    assert headers["x-acs-request-id"] == body["RequestId"]


def test_spaces_unicode_and_reserved_characters_sign_as_rfc3986():
    query = [("ServiceNameFuzzy", "数据 库*~'()!"), ("Lang", "en")]
    # The same pairs sent with %20 and with + for spaces, in another order.
    for raw in (
        "Lang=en&ServiceNameFuzzy=" + enc("数据 库*~'()!"),
        urllib.parse.urlencode(list(reversed(query))),
    ):
        status, _, body = acs3(query=query, raw_query=raw)
        assert status == 200, body
        assert body["PageInfo"]["TotalCount"] == 0


def test_a_form_body_is_covered_by_the_payload_hash():
    assert code(acs3(body=b"Port=22&Lang=en"))[0] == 200

    def swap_body_hash(state):
        state["headers"]["x-acs-content-sha256"] = EMPTY_SHA256

    assert code(acs3(body=b"Port=22", tamper=swap_body_hash)) == (400, "SignatureDoesNotMatch")


def flip_last(text):
    return text[:-1] + ("0" if text[-1] != "0" else "1")


@pytest.mark.parametrize(
    "name,tamper",
    [
        ("a signature digit", lambda s: s.update(signature=flip_last(s["signature"]))),
        ("a truncated signature", lambda s: s.update(signature=s["signature"][:-2])),
        ("the Action after signing", lambda s: s["headers"].update({"x-acs-action": "DescribeInternetOpenIp"})),
        ("a parameter added after signing", lambda s: s.update(query=s["query"] + "&Port=22")),
        ("a parameter value changed", lambda s: s.update(query=s["query"].replace("en", "zh"))),
        ("the nonce after signing", lambda s: s["headers"].update({"x-acs-signature-nonce": "other"})),
        ("the date after signing", lambda s: s["headers"].update({"x-acs-date": now_utc(1)})),
        ("x-acs-action left out of SignedHeaders", lambda s: s["signed"].remove("x-acs-action")),
        ("host left out of SignedHeaders", lambda s: s["signed"].remove("host")),
        ("a signed header that is not sent", lambda s: s["signed"].append("x-custom")),
    ],
)
def test_signatures_broken_in_small_ways_are_refused(name, tamper):
    status, _, body = acs3(query=[("Lang", "en")], tamper=tamper)
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch"), (name, body)
    assert conftest.USERS["secops"]["secret"] not in json.dumps(body)


def test_signed_headers_are_a_set_read_in_any_order_or_case():
    def shuffle(state):
        state["signed"] = [h.upper() for h in reversed(state["signed"])]

    assert code(acs3(tamper=shuffle))[0] == 200


def test_a_wrong_secret_unsigned_headers_and_no_signature_are_refused():
    assert code(acs3(secret="wrong")) == (400, "SignatureDoesNotMatch")
    assert code(acs3(extra_headers=[], unsigned_headers=[("x-acs-extra", "1")])) == (400, "SignatureDoesNotMatch")
    status, _, body = send("POST", "/?Action=DescribeInternetOpenPort", [("Host", conftest.ENDPOINT)])
    assert (status, body["Code"]) == (400, "MissingParameter")
    assert "Signature" in body["Message"]


def test_timestamps_are_checked_for_format_and_skew():
    assert code(acs3(date=now_utc(-16))) == (400, "InvalidTimeStamp.Expired")
    assert code(acs3(date=now_utc(16))) == (400, "InvalidTimeStamp.Expired")
    assert code(acs3(date=now_utc(-14)))[0] == 200
    assert code(acs3(date="2024-03-01 12:00:00")) == (400, "ErrorParameters")


def test_a_replayed_request_is_refused_even_resent_byte_for_byte():
    saved = {}

    def keep(state):
        saved.update(state)

    assert code(acs3(tamper=keep))[0] == 200
    key = conftest.USERS["secops"]["key"]
    auth = (
        f"ACS3-HMAC-SHA256 Credential={key},SignedHeaders={';'.join(saved['signed'])},"
        f"Signature={saved['signature']}"
    )
    headers = list(saved["headers"].items()) + [("Authorization", auth)]
    assert code(send("POST", "/", headers)) == (400, "SignatureNonceUsed")


def test_hand_signed_v1_requests():
    assert code(v1(params=[("Port", "22")]))[0] == 200
    assert code(v1(params=[("Port", "22")], method="POST"))[0] == 200
    assert code(v1(secret="wrong")) == (400, "SignatureDoesNotMatch")
    assert code(v1(override=[("SignatureMethod", "HMAC-SHA256")])) == (400, "ErrorParameters")
    assert code(v1(override=[("Timestamp", "yesterday")])) == (400, "ErrorParameters")
    assert code(v1(override=[("Timestamp", now_utc(-30))])) == (400, "InvalidTimeStamp.Expired")
    assert code(v1(drop=["SignatureNonce"])) == (400, "MissingParameter")
    assert code(v1(user="ports-only", override=[("Action", "DescribeInternetOpenDetail")])) == (403, "Forbidden.RAM")


@pytest.mark.parametrize(
    "params,param",
    [
        ([("PageSize", "0")], "PageSize"),
        ([("PageSize", "100000")], "PageSize"),
        ([("Port", "22; DROP TABLE")], "Port"),
        ([("Port", "-1")], "Port"),
        ([("CurrentPage", "1e3")], "CurrentPage"),
        ([("StartTime", "200"), ("EndTime", "100")], "EndTime"),
        ([("Lang", "fr")], "Lang"),
        ([("RiskLevel", "9")], "RiskLevel"),
        ([("ServiceName", "x" * 300)], "ServiceName"),
        ([("SourceIp", "<script>")], "SourceIp"),
    ],
)
def test_hostile_values_under_a_valid_signature_are_error_parameters(params, param):
    status, _, body = acs3(query=params)
    assert (status, body["Code"]) == (400, "ErrorParameters"), body
    assert param in body["Message"]
    assert len(body["Message"]) < 1000


@pytest.mark.parametrize(
    "action,params,param",
    [
        ("DescribeInternetOpenDetail", [("PublicIp", "203.0.113.0/24")], "PublicIp"),
        ("DescribeInternetOpenDetail", [("SortList.1.SortKey", "TotalBytes")], "SortList.1.SortKey"),
        ("DescribeInternetOpenDetail", [("SortList.1.SortKey", "Port"), ("SortList.1.Dir", "sideways")], "SortList.1.Dir"),
        ("DescribeInternetOpenDetail", [("SortList", "[{")], "SortList"),
        ("DescribeInternetOpenIp", [("PublicIp", "::ffff:zz")], "PublicIp"),
        ("DescribeInternetOpenStatistic", [("EndTime", "99999999999999")], "EndTime"),
    ],
)
def test_hostile_values_of_the_siblings_are_error_parameters(action, params, param):
    status, _, body = acs3(action=action, query=params)
    assert (status, body["Code"]) == (400, "ErrorParameters"), body
    assert param in body["Message"]


def test_a_page_far_past_the_end_is_empty_with_the_true_count():
    status, _, body = acs3(query=[("CurrentPage", "4294967295"), ("PageSize", "1000")])
    assert status == 200
    assert body["DataList"] == [] and body["PageInfo"]["TotalCount"] == 5
