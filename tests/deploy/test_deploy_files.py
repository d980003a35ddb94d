"""Every file under deploy/ parses, passes its schema, and runs the Procfile's commands.

Docker and Kubernetes do not run on the build machine, so nothing here starts a container:
the compose file is checked against the compose-spec JSON schema that check-jsonschema
vendors, the Kubernetes manifests against the Kubernetes JSON schemas that
kubernetes-validate bundles (strict: unknown fields fail), the Dockerfile and the systemd
units are parsed line by line. All of it works offline. The one process started here is a
real Celery worker, to prove the worker health check (the same command as the Kubernetes
liveness probe) answers.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
KUBERNETES_VERSION = "1.30"  # the oldest release the manifests promise to work on

# Procfile role -> the role's name in the deploy files.
ROLES = {"web": "api", "worker": "worker", "beat": "beat", "release": "migrate"}
LONGEST_DIAL = float(
    Settings.model_fields["dialer_connect_timeout"].default
    + Settings.model_fields["dialer_read_timeout"].default
)
# Settings are read from the environment by field name; PORT is read by `callbacks api`.
KNOWN_ENV = {name.upper() for name in Settings.model_fields} | {"PORT"}


# ---------------------------------------------------------------- the Procfile, the source


def procfile() -> dict[str, list[str]]:
    commands: dict[str, list[str]] = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            commands[ROLES[name.strip()]] = shlex.split(command)
    return commands


def assert_procfile_command(role: str, argv: list[str]) -> None:
    """argv is exactly the Procfile's command for role: no flags added anywhere."""
    assert argv == procfile()[role], f"{role}: {argv} is not the Procfile's {procfile()[role]}"


def test_procfile_names_every_role() -> None:
    assert set(procfile()) == set(ROLES.values())


# ---------------------------------------------------------------- Dockerfile

INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev|libpq-dev|git|cargo|rustc)\b"
)


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments)."""
    stages: list[list[tuple[str, str]]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line, pending = pending + stripped, ""
        keyword, _, args = line.partition(" ")
        assert keyword.upper() in INSTRUCTIONS, f"unknown Dockerfile instruction {keyword!r}"
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append([])
        assert stages, "an instruction before the first FROM"
        stages[-1].append((keyword, args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return stages


def exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list), args
    assert all(isinstance(a, str) for a in parsed), args
    return [str(a) for a in parsed]


def final_stage() -> list[tuple[str, str]]:
    return dockerfile_stages()[-1]


def test_dockerfile_is_multi_stage_on_python_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert stages[-1][0][1].split()[0] == "python:3.11-slim"
    copies = [args for kw, args in stages[-1] if kw == "COPY"]
    assert any(args.startswith("--from=builder ") for args in copies)


def test_dockerfile_final_stage_runs_as_non_root_user() -> None:
    users = [args for kw, args in final_stage() if kw == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in {"root", "0"}
    assert group not in {"root", "0"}


def test_dockerfile_final_stage_has_no_build_tools() -> None:
    for keyword, args in final_stage():
        if keyword == "RUN":
            assert not BUILD_TOOLS.search(args), f"build tool in the final image: {args}"
            assert "pip install" not in args, "the final stage copies the venv, builds nothing"
        if keyword == "FROM":
            assert "-dev" not in args


def test_dockerfile_healthcheck_runs_a_shipped_script() -> None:
    checks = [args for kw, args in final_stage() if kw == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD ")
    assert command, "HEALTHCHECK without CMD"
    assert "--timeout=" in options
    argv = exec_form(command)
    script = argv[-1]
    copied = {
        args.split()[-1]: args.split()[-2]
        for kw, args in final_stage()
        if kw == "COPY" and not args.startswith("--from=")
    }
    assert copied[script] == "deploy/healthcheck.py"
    assert (ROOT / copied[script]).is_file()


def test_dockerfile_default_command_is_the_procfile_web_command() -> None:
    cmds = [exec_form(args) for kw, args in final_stage() if kw == "CMD"]
    entrypoints = [args for kw, args in final_stage() if kw == "ENTRYPOINT"]
    assert entrypoints == [], "an ENTRYPOINT would prefix every role's command"
    assert_procfile_command("api", cmds[-1])


def test_dockerfile_copies_only_what_the_dockerignore_lets_in() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for stage in dockerfile_stages():
        for keyword, args in stage:
            if keyword == "COPY" and not args.startswith("--from="):
                for source in args.split()[:-1]:
                    assert (ROOT / source).exists(), source
                    assert any(source.rstrip("/") == a for a in allowed), source


# ---------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def compose_spec_schema() -> dict[str, Any]:
    # check-jsonschema vendors the compose-spec schema: no download at test time.
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    assert isinstance(schema, dict)
    return schema


def test_compose_matches_the_compose_spec_schema() -> None:
    schema = compose_spec_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator_class(schema).iter_errors(compose())
    ]
    assert errors == []


def test_compose_schema_check_catches_mistakes() -> None:
    broken = compose()
    broken["services"]["worker"]["stop_grace_period_typo"] = "90s"
    schema = compose_spec_schema()
    assert not jsonschema.validators.validator_for(schema)(schema).is_valid(broken)


def test_compose_services_run_the_procfile_commands() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "beat"} <= set(services)
    for role in ROLES.values():
        assert_procfile_command(role, services[role]["command"])


def test_compose_start_order_uses_health_and_completion() -> None:
    services = compose()["services"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    for role in ("api", "worker", "beat"):
        assert services[role]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "test" in services[dependency]["healthcheck"], (name, dependency)
    for role in ("api", "worker", "beat"):
        assert services[role]["healthcheck"]["test"][-1] == role


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_compose_worker_gets_time_to_finish_its_dials() -> None:
    worker = compose()["services"]["worker"]
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert seconds(worker["stop_grace_period"]) > LONGEST_DIAL


def test_compose_builds_the_deploy_dockerfile() -> None:
    for role in ROLES.values():
        build = compose()["services"][role]["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


# ---------------------------------------------------------------- Kubernetes


def manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path.name, document


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def component(doc: dict[str, Any]) -> str:
    labels: dict[str, str] = doc["spec"]["template"]["metadata"]["labels"]
    return labels["app.kubernetes.io/component"]


def workloads() -> dict[str, dict[str, Any]]:
    """Pod templates by role: the three Deployments and the migration Job."""
    docs = by_kind("Deployment") + by_kind("Job")
    return {component(doc): doc for doc in docs}


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("name_and_doc", list(manifests()), ids=lambda nd: nd[0])
def test_k8s_manifest_matches_the_kubernetes_schema(name_and_doc: tuple[str, Any]) -> None:
    # strict: the schemas with additionalProperties false, so a misspelt field fails too.
    _, doc = name_and_doc
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_k8s_schema_check_catches_mistakes() -> None:
    doc = workloads()["worker"]
    only_container(doc)["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_k8s_containers_run_the_procfile_commands() -> None:
    found = workloads()
    assert set(found) == set(ROLES.values())
    for role, workload in found.items():
        container = only_container(workload)
        assert "args" not in container
        assert_procfile_command(role, container["command"])


def test_k8s_selectors_match_their_pods() -> None:
    templates = {
        role: w["spec"]["template"]["metadata"]["labels"] for role, w in workloads().items()
    }
    for deployment in by_kind("Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    (service,) = by_kind("Service")
    assert service["spec"]["selector"].items() <= templates["api"].items()
    budgets = {
        role
        for pdb in by_kind("PodDisruptionBudget")
        for role, labels in templates.items()
        if pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    }
    assert budgets == {"api", "worker", "beat"}


def test_k8s_worker_outlives_its_longest_dial_and_is_probed() -> None:
    worker = workloads()["worker"]
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > LONGEST_DIAL
    probe = only_container(worker)["livenessProbe"]
    command = " ".join(probe["exec"]["command"])
    assert 'celery -A worker inspect ping -d "celery@$HOSTNAME"' in command
    assert probe["timeoutSeconds"] >= 10


def test_k8s_api_probes_health_and_readiness() -> None:
    api = only_container(workloads()["api"])
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert api["livenessProbe"]["httpGet"]["port"] in ports
    env = {e["name"]: e["value"] for e in api.get("env", [])}
    assert int(env.get("PORT", "8000")) == ports["http"]


def test_k8s_beat_runs_two_replicas_and_says_why_that_is_safe() -> None:
    assert workloads()["beat"]["spec"]["replicas"] == 2
    text = (K8S / "beat-deployment.yaml").read_text()
    assert "FOR UPDATE SKIP LOCKED" in text
    assert "safe" in text


def test_k8s_pods_run_as_the_image_user_and_read_the_config() -> None:
    uid = next(args for kw, args in reversed(final_stage()) if kw == "USER").split(":")[0]
    config_maps = {doc["metadata"]["name"] for doc in by_kind("ConfigMap")}
    secrets = {doc["metadata"]["name"] for doc in by_kind("Secret")}
    for workload in workloads().values():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert str(pod["securityContext"]["runAsUser"]) == uid
        sources = only_container(workload)["envFrom"]
        assert {s["configMapRef"]["name"] for s in sources if "configMapRef" in s} == config_maps
        assert {s["secretRef"]["name"] for s in sources if "secretRef" in s} == secrets


def test_kustomization_lists_every_manifest_but_the_migration_job() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "migrate-job.yaml"}
    assert set(kustomization["resources"]) == files


# ---------------------------------------------------------------- systemd

UNITS = {
    "api": "callbacks-api.service",
    "worker": "callbacks-worker.service",
    "beat": "callbacks-beat.service",
    "migrate": "callbacks-migrate.service",
}


def unit(role: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values]}} (systemd allows repeated keys)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate((SYSTEMD / UNITS[role]).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        where = f"{UNITS[role]}:{number}"
        assert not line.endswith("\\"), f"{where}: no continued lines here"
        if line.startswith("["):
            assert line.endswith("]"), where
            name = line[1:-1]
            assert name in {"Unit", "Service", "Install"}, f"{where}: section {name}"
            assert name not in sections, f"{where}: section {name} twice"
            current = sections[name] = {}
            continue
        assert current is not None, f"{where}: a setting before any section"
        key, equals, value = line.partition("=")
        assert equals, f"{where}: {line!r}"
        assert re.fullmatch(r"[A-Z][A-Za-z]+", key.strip()), f"{where}: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(role: str, section: str, key: str) -> str:
    values = unit(role)[section].get(key, [])
    assert len(values) == 1, f"{UNITS[role]}: [{section}] {key}={values}"
    return values[0]


def test_systemd_units_run_the_procfile_commands() -> None:
    assert {p.name for p in SYSTEMD.glob("*.service")} == set(UNITS.values())
    for role in ROLES.values():
        argv = shlex.split(one(role, "Service", "ExecStart"))
        assert argv[0].startswith("/"), "ExecStart names the venv's executable by full path"
        assert_procfile_command(role, [Path(argv[0]).name, *argv[1:]])


def test_systemd_units_read_the_env_file_and_stop_gracefully() -> None:
    for role in ROLES.values():
        assert one(role, "Service", "EnvironmentFile").startswith("/etc/")
        assert one(role, "Service", "User") != "root"
        assert unit(role)["Install"]["WantedBy"] == ["multi-user.target"]
    assert one("migrate", "Service", "Type") == "oneshot"
    for role in ("api", "worker", "beat"):
        assert one(role, "Service", "KillSignal") == "SIGTERM"
        # worker and beat: always, since kombu 5.7 can exit a worker cleanly on a Redis
        # restart (tests/e2e/test_crashes.py, the strict xfail) and it must come back.
        expected = "on-failure" if role == "api" else "always"
        assert one(role, "Service", "Restart") == expected
        assert float(one(role, "Service", "TimeoutStopSec")) > LONGEST_DIAL
        assert "callbacks-migrate.service" in one(role, "Unit", "Requires").split()
        assert "callbacks-migrate.service" in one(role, "Unit", "After").split()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_finds_nothing_wrong_but_the_missing_install() -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", *sorted(UNITS.values())],
        cwd=SYSTEMD,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = (done.stdout + done.stderr).splitlines()
    # /opt/callbacks/venv is not installed on the test machine; anything else is a mistake
    # (an unknown key or section, a bad value, a missing dependency).
    problems = [line for line in lines if "is not executable" not in line]
    assert problems == []


# ---------------------------------------------------------------- environment variables


def env_names() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for service, spec in compose()["services"].items():
        if "build" in spec:
            names[f"compose {service}"] = set(spec.get("environment", {}))
    for doc in by_kind("ConfigMap"):
        names["k8s ConfigMap"] = set(doc["data"])
    for doc in by_kind("Secret"):
        names["k8s Secret"] = set(doc["stringData"])
    for role, workload in workloads().items():
        names[f"k8s {role}"] = {e["name"] for e in only_container(workload).get("env", [])}
    example = (DEPLOY / "callbacks.env.example").read_text()
    names["callbacks.env.example"] = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", example, re.M))
    return names


def test_every_environment_variable_is_one_the_app_reads() -> None:
    for where, names in env_names().items():
        assert names <= KNOWN_ENV, f"{where}: {sorted(names - KNOWN_ENV)}"
    assert {"DATABASE_URL", "BROKER_URL", "SPEKO_API_URL", "SPEKO_API_KEY"} <= (
        env_names()["callbacks.env.example"]
    )


# ---------------------------------------------------------------- the health check script


def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_recognises_each_procfile_command() -> None:
    role_of = healthcheck().role_of
    for role, argv in procfile().items():
        as_run = ["/opt/venv/bin/python", f"/opt/venv/bin/{argv[0]}", *argv[1:]]
        assert role_of(as_run) == (None if role == "migrate" else role)
    assert role_of(["celery", "-A", "worker", "inspect", "ping", "-d", "celery@x"]) is None
    assert role_of(["callbacks", "api", "--port", "9000"]) == "api"


def test_healthcheck_reads_the_running_roles_from_proc(tmp_path: Path) -> None:
    for pid, argv in {"1": ["celery", "-A", "worker", "beat"], "7": ["sh"]}.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    assert healthcheck().running_roles(tmp_path) == {"beat"}


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_asks_the_api_healthz(status: int, healthy: bool) -> None:
    handler = type("Handler", (_Health,), {"status": status})
    with HTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            assert healthcheck().check_api(str(server.server_address[1])) is healthy
        finally:
            server.shutdown()


def test_healthcheck_fails_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert healthcheck().check_api(str(port), timeout=2.0) is False
    assert healthcheck().main(["nonsense"]) == 2


@pytest.mark.e2e
def test_worker_health_check_pings_a_real_worker(
    redis_url: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Docker health check and the k8s liveness probe run the same ping."""
    node = f"deploytest-{time.monotonic_ns()}"
    monkeypatch.setenv("BROKER_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", pg_url)
    # No provider here: a worker on PostgreSQL must be told to place no calls (issue 11).
    monkeypatch.setenv("DIALER", "log")
    monkeypatch.setenv("HOSTNAME", node)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{Path('/usr/bin')}")
    check = healthcheck()
    # The image waits 10 s for a reply; here a quicker "no" will do.
    monkeypatch.setattr(check, "PING_TIMEOUT_SECONDS", 3)
    assert check.check_worker() is False  # nothing answers yet
    worker = subprocess.Popen(
        [*procfile()["worker"], "-n", f"celery@{node}", "--concurrency", "1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not check.check_worker():
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the worker never answered the ping"
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def test_every_production_config_names_a_dialer_or_explains_dialer_log() -> None:
    """Issue 11, item 1: a worker on PostgreSQL without SPEKO_API_URL refuses to start, so
    each deployment either sets it or tells the operator about DIALER=log."""
    from worker.settings import Settings

    (configmap,) = by_kind("ConfigMap")
    settings = Settings(
        **{k.lower(): v for k, v in configmap["data"].items()},
        database_url="postgresql+psycopg://u@db/x",
        speko_api_key="k",
    )
    assert settings.effective_dialer == "speko"
    example = (DEPLOY / "callbacks.env.example").read_text()
    assert "#DIALER=log" in example
    assert "DIALER=log" in (DEPLOY / "compose.yaml").read_text()
