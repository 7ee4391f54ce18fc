"""The routes of the course server (see ``app`` for the list)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from autograder.course.gradebook import (
    class_rows,
    write_canvas_csv,
    write_class_gradebook,
    write_plain_csv,
)
from autograder.course.identities import Identities
from autograder.server import auth
from autograder.server.app import HERE, Server, queue_counts
from autograder.server.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, User
from autograder.server.classview import feedback, homework_stats, materialize
from autograder.server.db import Submission

DOWNLOADS = {"gradebook.csv", "canvas.csv", "grades.csv"}


def server_of(request: Request) -> Server:
    return request.app.state.server


# -- who is asking -------------------------------------------------------------------------


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def api_user(request: Request, cookie_ok: bool = False) -> User:
    """The caller of an API route: its bearer token (for downloads, a browser session also
    does: they change nothing)."""
    server = server_of(request)
    token = bearer(request)
    user = auth.user_of_token(server.db, token) if token else None
    if user is None and cookie_ok and token is None:
        user = auth.user_of_session(server.db, request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise HTTPException(
            401,
            "unknown or revoked token (set NEEDLE_TOKEN or put your token in .needle-token)"
            if token
            else "no token: send Authorization: Bearer <your token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


def page_user(request: Request) -> User | None:
    return auth.user_of_session(server_of(request).db, request.cookies.get(SESSION_COOKIE))


def instructor(user: User) -> User:
    if not user.instructor:
        raise HTTPException(403, "instructors only")
    return user


def check_csrf(user: User, sent: object) -> None:
    if not isinstance(sent, str) or not auth.same(user.csrf, sent):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")


def known_homework(server: Server, hw: str) -> str:
    if hw not in server.homeworks:
        raise HTTPException(
            404, f"unknown homework {hw!r}; this server accepts {', '.join(server.homeworks)}"
        )
    return hw


def render(server: Server, template: str, status: int = 200, **values) -> HTMLResponse:
    page = server.pages.get_template(template).render(course=server.course, **values)
    return HTMLResponse(page, status_code=status)


def summary(row: Submission) -> dict:
    return {
        "id": row.id,
        "homework": row.homework,
        "state": row.state,
        "sha256": row.sha256,
        "size": row.size,
        "submitted_at": row.submitted_at.isoformat(),
        "url": f"/api/submissions/{row.id}",
        "page": f"/submissions/{row.id}",
    }


# -- uploads -------------------------------------------------------------------------------


def too_big(server: Server, size: int | str) -> HTTPException:
    limit = server.config.max_upload_bytes
    return HTTPException(
        413, f"the upload ({size} bytes) is over the server's limit of {limit} bytes"
    )


async def read_body(request: Request, server: Server) -> bytes:
    """The request body, at most the upload limit (413 past it)."""
    limit = server.config.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        if int(length) <= 8 * limit:  # read it, so the client sees the answer, not a reset
            async for _ in request.stream():
                pass
        raise too_big(server, length)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise too_big(server, f"more than {limit}")
    return bytes(data)


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    # -- the JSON API ----------------------------------------------------------------------

    @app.get("/api/health")
    def health(request: Request):
        server = server_of(request)
        return {
            "ok": True,
            "course": server.course.name,
            "homeworks": list(server.homeworks),
            "max_upload_bytes": server.config.max_upload_bytes,
        }

    @app.get("/api/me")
    def me(request: Request):
        user = api_user(request)
        student = server_of(request).course.student(user.id)
        return {"id": user.id, "role": user.role, "name": student.name if student else user.id}

    @app.post("/api/homeworks/{hw}/submissions", status_code=201)
    async def upload(hw: str, request: Request):
        server = server_of(request)
        user = await run_in_threadpool(api_user, request)
        known_homework(server, hw)
        key = request.headers.get("idempotency-key") or None
        if key is not None and (len(key) > 100 or not key.isprintable()):
            raise HTTPException(400, "Idempotency-Key: at most 100 printable characters")
        if key is None or await run_in_threadpool(server.by_key, user.id, key) is None:
            server.check_rate(user)
        data = await read_body(request, server)
        if not data:
            raise HTTPException(400, "empty upload: send the submission zip as the body")
        filename = request.headers.get("x-filename", f"{hw}-submission.zip")
        row, created = await run_in_threadpool(server.accept, user, hw, filename, data, key)
        return JSONResponse(summary(row), status_code=201 if created else 200)

    @app.get("/api/submissions")
    def my_submissions(request: Request):
        server = server_of(request)
        user = api_user(request)
        return [summary(row) for row in server.submissions_of(user.id)]

    @app.get("/api/submissions/{submission_id}")
    def one_submission(submission_id: int, request: Request):
        server = server_of(request)
        user = api_user(request)
        row = server.submission_for(user, submission_id)
        return feedback(server.course, row, instructor=user.instructor).as_json()

    @app.get("/api/class/{hw}/{download}")
    def api_download(hw: str, download: str, request: Request):
        user = instructor(api_user(request, cookie_ok=True))
        return class_download(server_of(request), hw, download, user)

    @app.post("/api/class/{hw}/regrade", status_code=202)
    async def api_regrade(hw: str, request: Request):
        server = server_of(request)
        user = instructor(await run_in_threadpool(api_user, request))
        known_homework(server, hw)
        body = await request.json() if await request.body() else {}
        student = body.get("student") if isinstance(body, dict) else None
        reason = str(body.get("reason", "")) if isinstance(body, dict) else ""
        ids = await run_in_threadpool(server.regrade, hw, student, user.id, reason)
        return {"regrading": ids}

    @app.get("/api/cluster")
    def cluster_status(request: Request):
        server = server_of(request)
        instructor(api_user(request))
        workers: dict = {}
        client = getattr(server.cluster, "client", None)
        if client is not None:
            try:
                pids = client.run(_pid)
                info = client.scheduler_info()["workers"]
                workers = {
                    address: {"pid": pids.get(address), "name": str(w.get("name", ""))}
                    for address, w in info.items()
                }
            except Exception as error:  # the cluster is restarting a worker
                workers = {"error": str(error)}
        return {
            "queue": queue_counts(server),
            "in_flight": server.dispatcher.in_flight,
            "workers": workers,
        }

    # -- pages -----------------------------------------------------------------------------

    @app.get("/")
    def index(request: Request):
        user = page_user(request)
        if user is None:
            return RedirectResponse("/login", 303)
        return RedirectResponse("/dashboard" if user.instructor else "/me", 303)

    @app.get("/login")
    def login_page(request: Request):
        server = server_of(request)
        csrf = request.cookies.get(LOGIN_CSRF_COOKIE) or auth.new_secret()
        response = render(server, "login.html", csrf=csrf, error="")
        set_cookie(server, response, LOGIN_CSRF_COOKIE, csrf, 3600)
        return response

    @app.post("/login")
    async def login(request: Request):
        server = server_of(request)
        form = await request.form()
        sent, cookie = form.get("csrf"), request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not isinstance(sent, str) or not auth.same(sent, cookie):
            raise HTTPException(403, "the login form's CSRF token is missing or wrong: reload")
        token = form.get("token")
        user = await run_in_threadpool(
            auth.user_of_token, server.db, token.strip() if isinstance(token, str) else ""
        )
        if user is None:
            return render(server, "login.html", 401, csrf=cookie, error="unknown token")
        secret, _ = await run_in_threadpool(auth.open_session, server.db, user)
        response = RedirectResponse("/dashboard" if user.instructor else "/me", 303)
        set_cookie(server, response, SESSION_COOKIE, secret, auth.SESSION_HOURS * 3600)
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    @app.post("/logout")
    async def logout(request: Request):
        server = server_of(request)
        user = await run_in_threadpool(page_user, request)
        if user is not None:
            check_csrf(user, (await request.form()).get("csrf"))
            await run_in_threadpool(
                auth.close_session, server.db, request.cookies.get(SESSION_COOKIE)
            )
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/me")
    def student_page(request: Request):
        server = server_of(request)
        user = page_user(request)
        if user is None:
            return RedirectResponse("/login", 303)
        return my_page(server, user)

    @app.post("/submit")
    async def submit_form(request: Request):
        server = server_of(request)
        user = await run_in_threadpool(page_user, request)
        if user is None:
            return RedirectResponse("/login", 303)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > server.config.max_upload_bytes + 65536:
            async for _ in request.stream():
                pass
            return my_page(server, user, f"{too_big(server, length).detail}", 413)
        form = await request.form()
        check_csrf(user, form.get("csrf"))
        hw, upload = form.get("homework"), form.get("file")
        if not isinstance(hw, str) or hw not in server.homeworks:
            return my_page(server, user, "choose one of the course's homeworks", 400)
        if upload is None or isinstance(upload, str):
            return my_page(server, user, "choose your submission zip", 400)
        data = await upload.read(server.config.max_upload_bytes + 1)
        if len(data) > server.config.max_upload_bytes:
            return my_page(server, user, too_big(server, "more").detail, 413)
        try:
            row, _ = await run_in_threadpool(
                server.accept, user, hw, upload.filename or "", data, None
            )
        except HTTPException as error:
            response = my_page(server, user, str(error.detail), error.status_code)
            response.headers.update(error.headers or {})
            return response
        return RedirectResponse(f"/submissions/{row.id}", 303)

    @app.get("/submissions/{submission_id}")
    def submission_page(submission_id: int, request: Request):
        server = server_of(request)
        user = page_user(request)
        if user is None:
            return RedirectResponse("/login", 303)
        row = server.submission_for(user, submission_id)
        view = feedback(server.course, row, instructor=user.instructor)
        return render(server, "submission.html", user=user, view=view)

    @app.get("/dashboard")
    def dashboard(request: Request):
        server = server_of(request)
        user = page_user(request)
        if user is None:
            return RedirectResponse("/login", 303)
        instructor(user)
        stats = []
        for hw in server.homeworks:
            folder = materialize(server.db, server.storage, server.classes_dir, server.course, hw)
            stats.append(homework_stats(folder, server.course, hw))
        table = []
        for index, student in enumerate(server.course.students):
            table.append((student, [s.rows[index] for s in stats]))
        return render(
            server,
            "dashboard.html",
            user=user,
            stats=stats,
            table=table,
            queue=queue_counts(server),
            message=request.query_params.get("message", ""),
        )

    @app.get("/dashboard/{hw}/similarity")
    def similarity(hw: str, request: Request):
        server = server_of(request)
        user = page_user(request)
        if user is None:
            return RedirectResponse("/login", 303)
        instructor(user)
        known_homework(server, hw)
        from autograder.course.similarity import SimilarityUnavailable, class_similarity

        folder = materialize(server.db, server.storage, server.classes_dir, server.course, hw)
        try:
            page = class_similarity(hw, folder, course=server.course)
        except SimilarityUnavailable as error:
            return render(server, "message.html", 503, user=user, title="Similarity", text=error)
        response = HTMLResponse(Path(page).read_text(encoding="utf-8"))
        # the report is this package's own page (escaped by similarity.py), with inline CSS
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
        )
        return response

    @app.post("/dashboard/regrade")
    async def regrade_form(request: Request):
        server = server_of(request)
        user = await run_in_threadpool(page_user, request)
        if user is None:
            return RedirectResponse("/login", 303)
        instructor(user)
        form = await request.form()
        check_csrf(user, form.get("csrf"))
        hw = known_homework(server, str(form.get("homework", "")))
        student = str(form.get("student", "")).strip() or None
        if student and server.course.student(student) is None:
            raise HTTPException(400, f"{student!r} is not on the roster")
        ids = await run_in_threadpool(
            server.regrade, hw, student, user.id, str(form.get("reason", ""))
        )
        message = f"regrading {len(ids)} submission(s) of {hw}"
        return RedirectResponse(f"/dashboard?{_query(message=message)}", 303)


def _query(**values: str) -> str:
    from urllib.parse import urlencode

    return urlencode(values)


def _pid() -> int:
    import os

    return os.getpid()


def set_cookie(server: Server, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        httponly=True,
        samesite="lax",
        secure=server.config.secure_cookies,
        path="/",
    )


def my_page(server: Server, user: User, error: str = "", status: int = 200) -> HTMLResponse:
    views = [
        feedback(server.course, row, instructor=False) for row in server.submissions_of(user.id)
    ]
    return render(
        server, "me.html", status, user=user, views=views, error=error, homeworks=server.homeworks
    )


def class_download(server: Server, hw: str, download: str, user: User) -> Response:
    """gradebook.csv (everything), canvas.csv (Canvas's import) or grades.csv (plain)."""
    known_homework(server, hw)
    if download not in DOWNLOADS:
        raise HTTPException(404, f"downloads: {', '.join(sorted(DOWNLOADS))}")
    folder = materialize(server.db, server.storage, server.classes_dir, server.course, hw)
    rows = class_rows(server.course, Identities.load(folder), folder)
    units: list[str] = []
    for row in rows:
        for test in (row.result or {}).get("tests", []):
            if test["name"] not in units:
                units.append(test["name"])
    target = folder / "_class" / f"download-{download}"
    if download == "gradebook.csv":
        write_class_gradebook(target, rows, units)
    elif download == "canvas.csv":
        write_canvas_csv(target, server.course, hw, rows)
    else:
        write_plain_csv(target, server.course, hw, rows)
    text = target.read_text(encoding="utf-8")
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{hw}-{download}"'},
    )
