"""SMART App Launch with the authorisation code grant and PKCE, end to end over HTTP
(https://hl7.org/fhir/smart-app-launch/app-launch.html): sign-in page, role or patient choice,
code, token, refresh, the launch context and the id_token."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx

from carerecord.access.tokens import AccessTokens
from tests.access.support import PASSWORD, REDIRECT, Community, Flow, hidden_fields, pkce


def _payload(token: str) -> dict[str, Any]:
    """The claims of one of our JWTs, unverified (these tests check what a token says;
    test_tokens.py checks that signatures, audiences and expiry are enforced)."""
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # type: ignore[no-any-return]


def test_a_gp_signs_in_chooses_their_gp_role_and_the_token_carries_that_role(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, _ = community.app()
    flow = Flow(browser, live_server, client_id)
    body = flow.token(community.user("gp"), choice="PractitionerRole/role-gp")
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    claims = _payload(body["access_token"])
    assert claims["sub"] == "Practitioner/dr-who"
    assert claims["role"] == {"practitioner_role": "PractitionerRole/role-gp", "role": "doctor",
                              "organization": "Organization/org-practice"}
    r = httpx.get(f"{live_server}/Patient/pat-1", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert r.status_code == 200, r.text


def test_the_role_choice_page_offers_only_the_persons_own_roles_and_refuses_a_tampered_choice(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, _ = community.app()
    flow = Flow(browser, live_server, client_id)
    page = browser.get("/oauth/authorize", params=flow.params())
    r = browser.post("/oauth/authorize", data=hidden_fields(page.text) | {
        "username": community.user("gp"), "password": PASSWORD})
    assert sorted(re.findall(r'value="(PractitionerRole/[^"]+)"', r.text)) == [
        "PractitionerRole/role-desk", "PractitionerRole/role-gp"]
    tampered = browser.post("/oauth/authorize", data=hidden_fields(r.text) | {"choice": "PractitionerRole/other"})
    assert tampered.status_code == 403 and "location" not in tampered.headers


def test_a_patient_gets_their_own_patient_in_context_and_an_id_token_naming_them(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, _ = community.app()
    body = Flow(browser, live_server, client_id).token(community.user("patient"))
    assert body["patient"] == "pat-1" and body["need_patient_banner"] is True
    id_token = _payload(body["id_token"])
    assert id_token["fhirUser"] == f"{live_server}/Patient/pat-1" and id_token["aud"] == client_id


def test_a_proxy_chooses_whose_record_among_the_patients_granted_to_them(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, _ = community.app()
    body = Flow(browser, live_server, client_id).token(community.user("proxy"), choice="pat-2")
    assert body["patient"] == "pat-2"
    assert _payload(body["access_token"])["patients"] == ["pat-1", "pat-2"]


def test_a_wrong_password_shows_the_sign_in_page_again_without_saying_which_part_was_wrong(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, _ = community.app()
    for username in (community.user("gp"), "nobody-at-all"):
        r = Flow(browser, live_server, client_id).sign_in(username, "wrong password")
        assert r.status_code == 401 and "username or password is not right" in r.text
        assert "wrong password" not in r.text


def test_a_sign_in_post_without_the_csrf_cookie_is_refused(
        live_server: str, community: Community, browser: httpx.Client) -> None:
    client_id, _ = community.app()
    flow = Flow(browser, live_server, client_id)
    form = hidden_fields(browser.get("/oauth/authorize", params=flow.params()).text)
    with httpx.Client(base_url=str(browser.base_url)) as stranger:  # no cookie jar shared
        r = stranger.post("/oauth/authorize", data=form | {"username": community.user("patient"),
                                                            "password": PASSWORD})
    assert r.status_code == 400 and "location" not in r.headers


def test_pkce_is_required_and_must_be_s256(browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, _ = community.app()
    flow = Flow(browser, live_server, client_id)
    for change in ({"code_challenge": ""}, {"code_challenge_method": "plain"}):
        params = flow.params() | change
        r = browser.get("/oauth/authorize", params=params)
        assert r.status_code == 302 and "error=invalid_request" in r.headers["location"], r.text


def test_the_code_verifier_must_match_and_a_code_works_once(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, _ = community.app()
    flow = Flow(browser, live_server, client_id)
    code = flow.code(community.user("patient"))
    assert flow.exchange(code, verifier=pkce()[0]).json()["error"] == "invalid_grant"
    code = flow.code(community.user("patient"))
    assert flow.exchange(code).status_code == 200
    assert flow.exchange(code).json()["error"] == "invalid_grant"


def test_an_unregistered_redirect_uri_is_never_redirected_to(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, _ = community.app()
    params = Flow(browser, live_server, client_id).params() | {"redirect_uri": "https://evil.example/cb"}
    r = browser.get("/oauth/authorize", params=params)
    assert r.status_code == 400 and "location" not in r.headers


def test_the_aud_parameter_must_be_this_servers_fhir_base(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, _ = community.app()
    params = Flow(browser, live_server, client_id).params() | {"aud": "https://other.example/fhir"}
    r = browser.get("/oauth/authorize", params=params)
    assert r.status_code == 302 and r.headers["location"].startswith(REDIRECT)
    assert "error=invalid_request" in r.headers["location"]


def test_refresh_tokens_rotate_and_a_reused_one_revokes_the_whole_family(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, _ = community.app()
    first = Flow(browser, live_server, client_id).token(community.user("patient"))

    def refresh(token: str) -> httpx.Response:
        return browser.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                                  "client_id": client_id})

    second = refresh(first["refresh_token"])
    assert second.status_code == 200 and second.json()["refresh_token"] != first["refresh_token"]
    assert second.json()["patient"] == "pat-1"  # the launch context survives rotation
    assert refresh(first["refresh_token"]).json()["error"] == "invalid_grant"  # replayed
    assert refresh(second.json()["refresh_token"]).json()["error"] == "invalid_grant"  # family revoked


def test_a_confidential_app_authenticates_at_the_token_endpoint(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, secret = community.app(confidential=True)
    flow = Flow(browser, live_server, client_id)
    code = flow.code(community.user("patient"))
    assert flow.exchange(code, secret="not the secret").status_code == 401
    code = flow.code(community.user("patient"))
    assert flow.exchange(code, secret=secret).status_code == 200


def test_an_ehr_launch_binds_the_patient_and_encounter_the_clinician_was_in(
        browser: httpx.Client, live_server: str, community: Community, engine: object) -> None:
    client_id, _ = community.app()
    staff = Flow(browser, live_server, client_id).token(community.user("gp"), choice="PractitionerRole/role-gp")
    r = browser.post("/oauth/launch", json={"patient": "pat-1", "encounter": "enc-1"},
                     headers={"Authorization": f"Bearer {staff['access_token']}"})
    assert r.status_code == 200, r.text
    launch = r.json()["launch"]
    flow = Flow(browser, live_server, client_id, extra={"launch": launch})
    body = flow.token(community.user("gp"), choice="PractitionerRole/role-gp")
    assert (body["patient"], body["encounter"]) == ("pat-1", "enc-1")
    assert body["need_patient_banner"] is False
    someone_else = Flow(browser, live_server, client_id, extra={"launch": launch}).sign_in(community.user("patient"))
    assert someone_else.status_code == 403


def test_only_staff_whose_role_may_launch_apps_can_start_an_ehr_launch(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, _ = community.app()
    desk = Flow(browser, live_server, client_id).token(community.user("gp"), choice="PractitionerRole/role-desk")
    patient = Flow(browser, live_server, client_id).token(community.user("patient"))
    for token in (desk, patient):
        r = browser.post("/oauth/launch", json={"patient": "pat-1"},
                         headers={"Authorization": f"Bearer {token['access_token']}"})
        assert r.status_code == 403


def test_a_principal_rebuilt_from_the_token_has_the_activities_of_the_chosen_role(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    from carerecord.access.roles import Activity

    client_id, _ = community.app()
    tokens = AccessTokens(community.engine, live_server[: -len("/fhir")], live_server)
    gp = tokens.principal(Flow(browser, live_server, client_id).token(
        community.user("gp"), choice="PractitionerRole/role-gp")["access_token"])
    desk = tokens.principal(Flow(browser, live_server, client_id).token(
        community.user("gp"), choice="PractitionerRole/role-desk")["access_token"])
    assert gp.may(Activity.PRESCRIBE) and gp.role is not None and gp.role.organization == "Organization/org-practice"
    assert not desk.may(Activity.READ_CLINICAL_RECORD) and desk.may(Activity.MANAGE_APPOINTMENTS)
