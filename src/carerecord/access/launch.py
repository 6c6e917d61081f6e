"""EHR launch: the ``launch`` parameter that binds a SMART app's authorisation to the context
the EHR user was in (https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-ehr-launch).

The EHR (our UI, or any client holding a staff token) asks for a launch value for a patient and
optionally an encounter; the app passes it to /authorize; the token response then carries that
patient and encounter. The value is a short-lived JWT signed by this server, opaque to the app,
and bound to the member of staff who made it: another person cannot use it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError

from carerecord.access.keys import ALG
from carerecord.access.tokens import AccessTokens

LAUNCH_SECONDS = 300


class LaunchError(ValueError):
    """A launch value that is malformed, expired, or not this person's."""


@dataclass(frozen=True, slots=True)
class Launch:
    fhir_user: str
    patient: str | None
    encounter: str | None


def mint_launch(tokens: AccessTokens, fhir_user: str, patient: str | None, encounter: str | None) -> str:
    """A launch value for ``fhir_user`` in the context of ``patient`` (and ``encounter``), as
    plain ids ("123", not "Patient/123"), as the token response will carry them."""
    now = int(time.time())
    claims = {"iss": tokens.issuer, "aud": f"{tokens.issuer}#launch", "sub": fhir_user, "iat": now,
              "exp": now + LAUNCH_SECONDS, "jti": uuid.uuid4().hex}
    if patient:
        claims["patient"] = patient
    if encounter:
        claims["encounter"] = encounter
    return tokens.sign(claims, typ="launch+jwt")


def open_launch(tokens: AccessTokens, value: str) -> Launch:
    """The context of a launch value made by this server; LaunchError otherwise."""
    try:
        decoded = jwt.decode(value, tokens.keys.keyset(), algorithms=[ALG])
    except (JoseError, ValueError) as e:
        raise LaunchError("The launch parameter is not valid") from e
    c = decoded.claims
    if (decoded.header.get("typ") != "launch+jwt" or c.get("iss") != tokens.issuer
            or c.get("aud") != f"{tokens.issuer}#launch"):
        raise LaunchError("The launch parameter was not made by this server")
    if not isinstance(c.get("exp"), int) or c["exp"] < time.time():
        raise LaunchError("The launch has expired")
    return Launch(c["sub"], c.get("patient"), c.get("encounter"))
