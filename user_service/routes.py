"""user_service HTTP endpoints: parse, call the service, shape the response."""

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from common.auth import current_user, public_jwk, require_admin
from common.headers import NO_STORE
from common.openapi import (
    BEARER,
    empty_response,
    json_body,
    json_response,
    path_parameter,
    problem_response,
)
from common.telemetry.metrics import outcome_of
from common.validation import parse_body
from common.web import client_ip
from user_service import metrics
from user_service.schemas import (
    Credentials,
    JwkSet,
    PasswordChange,
    RefreshRequest,
    Token,
    User,
    UserPatch,
)

bp = Blueprint("users")


@bp.post("/users")
@openapi.summary("Register an account")
@openapi.tag("users")
@json_body(Credentials)
@json_response(201, User, "the new account")
@problem_response(400, "bad_request: the body is missing or not JSON")
@problem_response(409, "username_taken")
@problem_response(422, "invalid_request, or weak_password: errors say what the policy needs")
@problem_response(503, "busy: too many password checks at once; Retry-After says when to retry")
@problem_response(429, "rate_limited: too many sign-ups from this address; see Retry-After")
async def register(request: Request) -> HTTPResponse:
    with outcome_of(metrics.USER_REGISTRATIONS, "created"):
        await request.app.ctx.limiter.hit(request.app.ctx.limits.signups, client_ip(request))
        body = parse_body(request, Credentials)
        user = await request.app.ctx.users.register(body.username, body.password)
    return json(user.model_dump(mode="json"), status=201)


@bp.post("/tokens")
@openapi.summary("Log in: exchange a username and password for an access token")
@openapi.tag("users")
@json_body(Credentials)
@json_response(200, Token, "a bearer access token and a refresh token")
@problem_response(400, "bad_request: the body is missing or not JSON")
@problem_response(401, "invalid_credentials")
@problem_response(403, "account_disabled: the password is right, the account disabled")
@problem_response(422, "invalid_request")
@problem_response(
    429, "rate_limited: too many logins from this address, or failures for this username"
)
@problem_response(503, "busy: too many password checks at once; Retry-After says when to retry")
async def login(request: Request) -> HTTPResponse:
    with outcome_of(metrics.USER_LOGINS, "ok"):
        await request.app.ctx.limiter.hit(request.app.ctx.limits.logins, client_ip(request))
        body = parse_body(request, Credentials)
        token = await request.app.ctx.users.login(body.username, body.password)
    return json(token.model_dump(mode="json"), headers=NO_STORE)


@bp.post("/tokens/refresh")
@openapi.summary("Exchange a refresh token, once, for a new access token and refresh token")
@openapi.tag("users")
@json_body(RefreshRequest)
@json_response(200, Token, "the next access token and refresh token")
@problem_response(400, "bad_request: the body is missing or not JSON")
@problem_response(401, "invalid_grant, or refresh_token_reused: its whole login is revoked")
@problem_response(422, "invalid_request")
@problem_response(429, "rate_limited: too many refreshes from this address; see Retry-After")
async def refresh(request: Request) -> HTTPResponse:
    await request.app.ctx.limiter.hit(request.app.ctx.limits.refreshes, client_ip(request))
    body = parse_body(request, RefreshRequest)
    token = await request.app.ctx.users.refresh(body.refresh_token)
    return json(token.model_dump(mode="json"), headers=NO_STORE)


@bp.post("/tokens/revoke")
@openapi.summary("Log out: revoke a refresh token and every token of its login")
@openapi.tag("users")
@json_body(RefreshRequest)
@empty_response(204, "revoked, or not a token this service knows (RFC 7009)")
@problem_response(400, "bad_request: the body is missing or not JSON")
@problem_response(422, "invalid_request")
@problem_response(429, "rate_limited: too many logouts from this address; see Retry-After")
async def revoke(request: Request) -> HTTPResponse:
    await request.app.ctx.limiter.hit(request.app.ctx.limits.revocations, client_ip(request))
    body = parse_body(request, RefreshRequest)
    await request.app.ctx.users.revoke(body.refresh_token)
    return empty(headers=NO_STORE)


@bp.put("/users/me/password")
@openapi.summary("Change your password; every token of the account is revoked")
@openapi.tag("users")
@openapi.secured(BEARER)
@json_body(PasswordChange)
@empty_response(204, "changed: log in again with the new password")
@problem_response(400, "bad_request: the body is missing or not JSON")
@problem_response(401, "unauthorized, or token_revoked")
@problem_response(403, "wrong_password, or account_disabled")
@problem_response(422, "invalid_request, or weak_password: errors say what the policy needs")
@problem_response(429, "rate_limited: too many failures for this username; see Retry-After")
@problem_response(503, "busy: too many password checks at once; Retry-After says when to retry")
async def change_password(request: Request) -> HTTPResponse:
    principal = await current_user(request)
    body = parse_body(request, PasswordChange)
    await request.app.ctx.users.change_password(principal, body.old_password, body.new_password)
    return empty()


@bp.get("/users/me")
@openapi.summary("The account behind the access token")
@openapi.tag("users")
@openapi.secured(BEARER)
@json_response(200, User, "your account")
@problem_response(401, "unauthorized")
async def me(request: Request) -> HTTPResponse:
    principal = await current_user(request)
    user = await request.app.ctx.users.get_user(principal, principal.user_id)
    return json(user.model_dump(mode="json"))


@bp.get("/users/<user_id:int>")
@openapi.summary("One account: your own, or any for an admin")
@openapi.tag("users")
@openapi.secured(BEARER)
@path_parameter("user_id", {"type": "integer"}, "the account's id")
@json_response(200, User, "the account")
@problem_response(401, "unauthorized")
@problem_response(403, "forbidden: someone else's account, and you are not an admin")
@problem_response(404, "not_found")
async def get_user(request: Request, user_id: int) -> HTTPResponse:
    principal = await current_user(request)
    user = await request.app.ctx.users.get_user(principal, user_id)
    return json(user.model_dump(mode="json"))


@bp.patch("/users/<user_id:int>")
@openapi.summary("Disable or enable an account, or change its admin flag (admins only)")
@openapi.tag("users")
@openapi.secured(BEARER)
@path_parameter("user_id", {"type": "integer"}, "the account's id")
@json_body(UserPatch)
@json_response(200, User, "the changed account")
@problem_response(400, "bad_request: the body is missing or not JSON")
@problem_response(401, "unauthorized")
@problem_response(403, "forbidden: admins only")
@problem_response(404, "not_found")
@problem_response(409, "last_admin: the last enabled admin may not be demoted or disabled")
@problem_response(422, "invalid_request")
async def update_user(request: Request, user_id: int) -> HTTPResponse:
    await require_admin(request)
    patch = parse_body(request, UserPatch)
    user = await request.app.ctx.users.update_user(user_id, patch.changes())
    return json(user.model_dump(mode="json"))


@bp.get("/.well-known/jwks.json")
@openapi.summary("The public key that verifies access tokens")
@openapi.tag("keys")
@json_response(200, JwkSet, "a JSON Web Key Set")
async def jwks(request: Request) -> HTTPResponse:
    return json({"keys": [public_jwk(request.app.ctx.private_key)]})
