"""exposure through the official Alibaba Cloud SDK: every Action parses into
the SDK's response models, both signature versions pass, and each refusal
surfaces as the SDK reports Alibaba Cloud's own."""

import datetime
import threading
import time

import pytest
from alibabacloud_cloudfw20171207 import models
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException
from alibabacloud_tea_openapi.utils import Utils

from conftest import make_client

# Fields the service leaves out on purpose (docs/api.md says why).
OMITTED = {"src_ip_cnt"}
# The SDK's type hint for DescribeInternetOpenService's ServiceName is int;
# the API (and this service) send the name as a string.
HINT_OVERRIDES = {("DescribeInternetOpenServiceResponseBodyDataList", "service_name"): "str"}


def check_model(model):
    """Every field of the SDK model is present with its declared type."""
    cls = type(model).__name__
    for name, hint in type(model).__init__.__annotations__.items():
        if name == "return":
            continue
        hint = HINT_OVERRIDES.get((cls, name), hint)
        value = getattr(model, name)
        if value is None:
            assert name in OMITTED, f"{cls}.{name} is missing"
            continue
        if hint == "int":
            assert type(value) is int, f"{cls}.{name}: {value!r}"
        elif hint == "str":
            assert type(value) is str, f"{cls}.{name}: {value!r}"
        elif hint == "bool":
            assert type(value) is bool, f"{cls}.{name}: {value!r}"
        elif hint == "List[str]":
            assert isinstance(value, list) and all(type(v) is str for v in value), (
                f"{cls}.{name}: {value!r}"
            )
        elif hint.startswith("List[main_models."):
            assert isinstance(value, list), f"{cls}.{name}"
            for item in value:
                check_model(item)
        elif hint.startswith("main_models."):
            check_model(value)
        else:
            raise AssertionError(f"{cls}.{name}: unexpected hint {hint}")


def check_response(resp):
    assert resp.status_code == 200
    assert resp.headers["x-acs-request-id"] == resp.body.request_id
    check_model(resp.body)
    return resp.body


def test_every_action_parses_into_the_sdk_models(algorithm):
    c = make_client("secops", algorithm=algorithm)
    port = check_response(
        c.describe_internet_open_port(models.DescribeInternetOpenPortRequest(lang="en", page_size="50"))
    )
    assert port.page_info.total_count == 5
    assert [(r.port, r.protocol) for r in port.data_list][:2] == [(3306, "tcp"), (22, "tcp")]

    ip = check_response(
        c.describe_internet_open_ip(
            models.DescribeInternetOpenIpRequest(lang="en", current_page="1", page_size="50")
        )
    )
    assert ip.page_info.total_count == 6
    assert ip.data_list[0].public_ip == "203.0.113.13"
    assert ip.data_list[0].port_list == ["3306"]

    service = check_response(
        c.describe_internet_open_service(models.DescribeInternetOpenServiceRequest(lang="en"))
    )
    assert [r.service_name for r in service.data_list] == ["MySQL", "SSH", "DNS", "Unknown", "HTTPS"]
    https = service.data_list[-1]
    assert (https.public_ip_num, https.detail_num, https.port_list) == (2, 2, ["443"])

    detail = check_response(
        c.describe_internet_open_detail(models.DescribeInternetOpenDetailRequest(lang="en", page_size="50"))
    )
    assert detail.page_info.total_count == 6
    ids = {r.id for r in detail.data_list}
    assert "[2001:db8:100::5]:53/udp" in ids

    stat = check_response(
        c.describe_internet_open_statistic(models.DescribeInternetOpenStatisticRequest(lang="en"))
    )
    assert (stat.internet_ip_num, stat.internet_port_num, stat.internet_service_num) == (6, 5, 5)
    assert (stat.internet_risk_ip_num, stat.internet_risk_port_num, stat.internet_risk_service_num) == (1, 1, 1)
    # Nothing is expected without changes.expected: every open port counts.
    assert stat.internet_unprotected_port_num == stat.internet_port_num


def test_filters_paging_and_sorting_travel_through_the_sdk(algorithm):
    c = make_client("secops", algorithm=algorithm)
    body = c.describe_internet_open_port(
        models.DescribeInternetOpenPortRequest(service_name_fuzzy="my sql", lang="en")
    ).body
    assert body.page_info.total_count == 0, "a space is a space, not a wildcard"
    body = c.describe_internet_open_port(
        models.DescribeInternetOpenPortRequest(service_name_fuzzy="SQL", risk_level="3")
    ).body
    assert [r.port for r in body.data_list] == [3306]
    body = c.describe_internet_open_port(
        models.DescribeInternetOpenPortRequest(page_size="2", current_page="3")
    ).body
    assert (body.page_info.current_page, body.page_info.page_size, body.page_info.total_count) == (3, 2, 5)
    assert len(body.data_list) == 1
    body = c.describe_internet_open_detail(
        models.DescribeInternetOpenDetailRequest(
            sort_list=[
                models.DescribeInternetOpenDetailRequestSortList(sort_key="Port", dir="desc"),
                models.DescribeInternetOpenDetailRequestSortList(sort_key="PublicIp", dir="asc"),
            ]
        )
    ).body
    assert [r.port for r in body.data_list] == [40000, 3306, 443, 443, 53, 22]
    assert [r.public_ip for r in body.data_list][2:4] == ["203.0.113.11", "203.0.113.12"]
    body = c.describe_internet_open_ip(
        models.DescribeInternetOpenIpRequest(public_ip="2001:db8:100::5", current_page="1", page_size="10")
    ).body
    assert [r.service_name_list for r in body.data_list] == [["DNS"]]
    # Texts follow Lang.
    zh = c.describe_internet_open_port(models.DescribeInternetOpenPortRequest(port="3306")).body
    en = c.describe_internet_open_port(models.DescribeInternetOpenPortRequest(port="3306", lang="en")).body
    assert zh.data_list[0].prob_risk != en.data_list[0].prob_risk


def expect_error(call, status, code):
    with pytest.raises(ClientException) as info:
        call()
    e = info.value
    assert (e.status_code, e.code) == (status, code), f"{e.status_code} {e.code}: {e.message}"
    assert e.data["RequestId"] and e.data["Message"] and e.data["Recommend"]
    return e


def port_call(client):
    return lambda: client.describe_internet_open_port(models.DescribeInternetOpenPortRequest())


def test_a_wrong_secret_is_signature_does_not_match(algorithm, users):
    wrong = "x" + users["secops"]["secret"]
    e = expect_error(
        port_call(make_client("secops", secret=wrong, algorithm=algorithm)), 400, "SignatureDoesNotMatch"
    )
    for secret in [wrong, users["secops"]["secret"]]:
        assert secret not in str(e) and secret not in str(e.data)


def test_an_unknown_access_key_is_not_found(algorithm):
    client = make_client(key="LTAI-nobody-here", secret="whatever", algorithm=algorithm)
    e = expect_error(port_call(client), 404, "InvalidAccessKeyId.NotFound")
    assert "LTAI-nobody-here" in e.message


def test_a_replayed_nonce_is_refused(algorithm, monkeypatch):
    nonce = f"replayed-{algorithm}-{time.time_ns()}"
    monkeypatch.setattr(Utils, "get_nonce", staticmethod(lambda: nonce))
    client = make_client("secops", algorithm=algorithm)
    port_call(client)()
    expect_error(port_call(client), 400, "SignatureNonceUsed")


@pytest.mark.parametrize("minutes", [-20, 20])
def test_a_skewed_clock_is_refused(algorithm, monkeypatch, minutes):
    skewed = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    monkeypatch.setattr(Utils, "get_timestamp", staticmethod(lambda: skewed.strftime("%Y-%m-%dT%H:%M:%SZ")))
    expect_error(port_call(make_client("secops", algorithm=algorithm)), 400, "InvalidTimeStamp.Expired")


def test_a_clock_a_few_minutes_off_is_accepted(monkeypatch):
    skewed = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)
    monkeypatch.setattr(Utils, "get_timestamp", staticmethod(lambda: skewed.strftime("%Y-%m-%dT%H:%M:%SZ")))
    port_call(make_client("secops"))()


def test_a_forbidden_action_is_forbidden_ram(algorithm):
    client = make_client("ports-only", algorithm=algorithm)
    port_call(client)()
    e = expect_error(
        lambda: client.describe_internet_open_ip(
            models.DescribeInternetOpenIpRequest(current_page="1", page_size="10")
        ),
        403,
        "Forbidden.RAM",
    )
    assert "DescribeInternetOpenIp" in e.message


def burst(client, n):
    """Sends n calls as fast as possible; returns (successes, throttling exceptions)."""
    ok, throttled = 0, []
    for _ in range(n):
        try:
            port_call(client)()
            ok += 1
        except ThrottlingException as e:
            throttled.append(e)
    return ok, throttled


def test_a_burst_over_the_qps_raises_the_sdk_throttling_exception(algorithm, users):
    time.sleep(1.1)  # a full bucket, whatever ran before
    qps = users["limited"]["qps"]
    started = time.monotonic()
    ok, throttled = burst(make_client("limited", algorithm=algorithm), 3 * qps)
    elapsed = time.monotonic() - started
    assert qps <= ok <= qps + int(qps * elapsed) + 1, (ok, elapsed)
    assert throttled, "some calls must be throttled"
    for e in throttled:
        assert (e.status_code, e.code) == (400, "Throttling.User")
        assert isinstance(e.retry_after, int) and 0 < e.retry_after <= 1000


def test_the_default_qps_is_ten(users):
    time.sleep(1.1)
    assert users["defaulted"]["qps"] is None
    started = time.monotonic()
    ok, throttled = burst(make_client("defaulted"), 25)
    elapsed = time.monotonic() - started
    assert 10 <= ok <= 10 + int(10 * elapsed) + 1, (ok, elapsed)
    assert throttled


def test_one_users_flood_never_slows_another(users):
    time.sleep(1.1)
    flood_ok = []

    def flood(name):
        client = make_client(name)
        for _ in range(3):
            flood_ok.append(burst(client, 20)[0])

    floods = [threading.Thread(target=flood, args=(name,)) for name in ("limited", "limited", "defaulted")]
    for t in floods:
        t.start()
    # Meanwhile "peer" sends within its own limit, paced: nothing is throttled.
    peer = make_client("peer")
    qps = users["peer"]["qps"]
    for _ in range(2 * qps):
        port_call(peer)()
        time.sleep(1.0 / qps + 0.02)
    for t in floods:
        t.join()
    assert sum(flood_ok) > 0


def test_several_users_bursting_at_once_each_get_their_own_budget(users):
    time.sleep(1.1)
    results = {}

    def run(name):
        results[name] = burst(make_client(name), 4 * users[name]["qps"])

    threads = [threading.Thread(target=run, args=(n,)) for n in ("limited", "peer")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, (ok, throttled) in results.items():
        assert ok >= users[name]["qps"], (name, ok)
        assert throttled, name
