"""Signing a person in: checking their password, offering the roles (staff) or patients
(proxies) they may act for, and fixing what the grant will contain (a :class:`Grantee`).

Two steps, no server-side session: after the password step the person's choice page carries a
*ticket*, a signed JWT valid for five minutes, naming the user and bound to this very
authorisation request (client, redirect URI and PKCE challenge), so it cannot be replayed
into another client's request. The choice is then checked against the person's own options
again: a tampered form cannot pick someone else's role or patient.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError

from carerecord.access.directory import Directory, RoleChoice
from carerecord.access.grants import Grantee
from carerecord.access.keys import ALG
from carerecord.access.launch import LaunchError, open_launch
from carerecord.access.scopes import ScopeSet
from carerecord.access.tokens import AccessTokens
from carerecord.access.users import User, Users

TICKET_SECONDS = 300


class SignInError(ValueError):
    """A sign-in that cannot go on; the message is safe to show to the person."""


@dataclass(frozen=True, slots=True)
class Options:
    """What the person must choose between: roles for staff, patients for a proxy with
    several (an empty tuple means nothing to choose)."""

    roles: tuple[RoleChoice, ...] = ()
    patients: tuple[tuple[str, str], ...] = ()  # (patient id, label)


def binding(params: Mapping[str, str]) -> str:
    """What ties a ticket to one authorisation request."""
    parts = (params.get("client_id", ""), params.get("redirect_uri", ""), params.get("code_challenge", ""))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class SignIn:
    def __init__(self, users: Users, directory: Directory, tokens: AccessTokens) -> None:
        self.users = users
        self.directory = directory
        self.tokens = tokens

    def check_password(self, username: str, password: str) -> User | None:
        return self.users.authenticate(username.strip(), password)

    def options(self, user: User) -> Options:
        if user.kind == "staff":
            roles = tuple(self.directory.role_choices(user.fhir_user))
            if not roles:
                raise SignInError("You have no role at any organisation here; ask your administrator.")
            return Options(roles=roles)
        if user.kind == "proxy":
            patients = self.directory.granted_patients(user.grants)
            if not patients:
                raise SignInError("You have not been given access to anyone's record.")
            if len(patients) > 1:
                return Options(patients=tuple((p.partition("/")[2], self.directory.display(p) or p)
                                              for p in patients))
        return Options()

    def ticket(self, user: User, params: Mapping[str, str]) -> str:
        now = int(time.time())
        return self.tokens.sign({"iss": self.tokens.issuer, "aud": f"{self.tokens.issuer}#signin",
                                 "sub": user.user_id, "bind": binding(params), "iat": now,
                                 "exp": now + TICKET_SECONDS}, typ="signin+jwt")

    def open_ticket(self, ticket: str, params: Mapping[str, str]) -> User:
        try:
            decoded = jwt.decode(ticket, self.tokens.keys.keyset(), algorithms=[ALG])
        except (JoseError, ValueError) as e:
            raise SignInError("Your sign-in could not be read; please sign in again.") from e
        c = decoded.claims
        if (decoded.header.get("typ") != "signin+jwt" or c.get("aud") != f"{self.tokens.issuer}#signin"
                or c.get("bind") != binding(params) or not isinstance(c.get("exp"), int)
                or c["exp"] < time.time()):
            raise SignInError("Your sign-in has expired; please sign in again.")
        user = self.users.get(str(c.get("sub")))
        if user is None:
            raise SignInError("Your account is not active.")
        return user

    def grantee(self, user: User, params: Mapping[str, str], scope: str, choice: str | None) -> Grantee:
        """The grant for ``user`` acting as ``choice`` (a PractitionerRole reference for staff, a
        patient id for a proxy with several), in the launch context the request asks for."""
        scopes = ScopeSet.parse(scope)
        opts = self.options(user)
        common = {"user_id": user.user_id, "subject": user.fhir_user, "display": user.display,
                  "nonce": params.get("nonce") or None, "auth_time": int(time.time()), "amr": ("pwd",)}
        launch_patient = launch_encounter = None
        ehr_launch = bool(params.get("launch"))
        if ehr_launch:
            try:
                launch = open_launch(self.tokens, params["launch"])
            except LaunchError as e:
                raise SignInError(str(e)) from e
            if launch.fhir_user != user.fhir_user:
                raise SignInError("This launch was started by someone else.")
            launch_patient, launch_encounter = launch.patient, launch.encounter
        if user.kind == "staff":
            role = next((r for r in opts.roles if r.practitioner_role == choice), None)
            if role is None:
                raise SignInError("Choose one of your roles.")
            return Grantee("staff", practitioner_role=role.practitioner_role,
                           role=role.role.key if role.role else "", organization=role.organization,
                           patient=launch_patient, encounter=launch_encounter, **common)  # type: ignore[arg-type]
        if user.kind == "patient":
            own = user.fhir_user.partition("/")[2]
            wants = scopes.has("launch/patient")
            return Grantee("patient", patients=(own,), patient=own if wants else None,
                           need_patient_banner=wants, **common)  # type: ignore[arg-type]
        granted = tuple(p.partition("/")[2] for p in self.directory.granted_patients(user.grants))
        if opts.patients:
            if choice not in granted:
                raise SignInError("Choose whose record to open.")
            chosen: str | None = choice
        else:
            chosen = granted[0]
        wants = scopes.has("launch/patient")
        return Grantee("proxy", patients=granted, patient=chosen if wants else None,
                       need_patient_banner=wants, **common)  # type: ignore[arg-type]
