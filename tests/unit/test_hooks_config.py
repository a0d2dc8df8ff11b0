"""Hook rules in trioproxy.toml, without running anything: the keys, the files read beside the
TOML (and only inside its directory), the syntax-tree checks and the blocking-call lint, the
rule order and reachability, and loading the bytes under a private module name."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from trioproxy.config._config import ConfigError, load_settings, read_config, settings_from_bytes
from trioproxy.config._hookcheck import check_hook_source
from trioproxy.config._hookfiles import BUNDLE_MAGIC, unbundle
from trioproxy.core._requestview import request_view
from trioproxy.core._ruleengine import PASS, RuleEngine
from trioproxy.core._rulemodel import HookAction
from trioproxy.hooks._load import HookLoadError, load_hooks

GOOD = "async def check(exchange):\n    pass\n"


def write(tmp_path: Path, toml: str, **files: str) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (tmp_path / "trioproxy.toml").write_text(textwrap.dedent(toml))
    return tmp_path


def problems(tmp_path: Path, toml: str, **files: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, toml, **files))
    return [str(problem).replace(str(tmp_path) + "/", "") for problem in caught.value.problems]


def lint(source: str, name: str = "check") -> list[tuple[int | None, str]]:
    return check_hook_source(textwrap.dedent(source).encode(), name)


# --- the key -----------------------------------------------------------------------------------


def test_a_hook_rule_loads_into_an_action_with_the_files_bytes(tmp_path: Path) -> None:
    settings = load_settings(
        write(
            tmp_path,
            """
            [[rules]]
            match.path_prefix = "/admin"
            hook = { file = "hooks/auth.py", name = "check", timeout_s = 0.2, on_error = 503 }
            """,
            **{"hooks/auth.py": GOOD},
        )
    )
    (rule,) = settings.rules.rules
    assert rule.actions == (HookAction("hooks/auth.py", "check", 0.2, 503, GOOD.encode()),)


@pytest.mark.parametrize(
    ("hook", "expected"),
    [
        ('{ name = "check" }', "rules[1].hook.file: missing: a hook needs file and name"),
        ('{ file = "hooks/a.py" }', "rules[1].hook.name: missing"),
        ('{ file = "a.txt", name = "c" }', "rules[1].hook.file: expected a path to a .py file"),
        ('{ file = "/etc/a.py", name = "c" }', "rules[1].hook.file: must be relative"),
        ('{ file = "x/../../a.py", name = "c" }', "rules[1].hook.file: must stay inside"),
        ('{ file = "a.py", name = "not-a-name" }', "rules[1].hook.name: expected a Python name"),
        ('{ file = "a.py", name = "check", timeout_s = 0 }', "rules[1].hook.timeout_s: expected"),
        (
            '{ file = "a.py", name = "check", on_error = 500 }',
            'on_error: expected "pass", 502 or 503',
        ),
        ('{ file = "a.py", name = "check", retry = 1 }', "rules[1].hook.retry: unknown key"),
        ('{ file = "gone.py", name = "c" }', "gone.py: no such file in the configuration"),
    ],
)
def test_each_wrong_hook_key_is_one_precise_line(tmp_path: Path, hook: str, expected: str) -> None:
    found = problems(tmp_path, f"[[rules]]\nhook = {hook}\n", **{"a.py": GOOD})
    assert len(found) == 1 and expected in found[0], found
    assert found[0].startswith("trioproxy.toml:2: "), found


def test_a_hook_cannot_share_a_rule_with_an_answer(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '[[rules]]\nhook = { file = "a.py", name = "check" }\nrespond.status = 204\n',
        **{"a.py": GOOD},
    )
    assert found == [
        "trioproxy.toml:2: rules[1].hook: a hook answers in code; it cannot go with respond"
        " in one rule"
    ]


def test_a_symlink_leading_out_is_refused_and_one_inside_is_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text(GOOD)
    config = tmp_path / "config"
    (config / "hooks").mkdir(parents=True)
    (config / "hooks" / "out.py").symlink_to(outside)
    (config / "real.py").write_text(GOOD)
    (config / "hooks" / "in.py").symlink_to(config / "real.py")
    found = problems(
        config,
        '[[rules]]\nhook = { file = "hooks/out.py", name = "check" }\n'
        '[[rules]]\nhook = { file = "hooks/in.py", name = "check" }\n',
    )
    assert len(found) == 1 and "symbolic link leading out" in found[0], found


def test_hook_files_travel_in_the_configurations_bytes(tmp_path: Path) -> None:
    write(tmp_path, '[[rules]]\nhook = { file = "a.py", name = "check" }\n', **{"a.py": GOOD})
    file, raw = read_config(tmp_path)
    assert raw is not None and raw.startswith(BUNDLE_MAGIC)
    (tmp_path / "a.py").write_text("changed on disk after the read")
    # A worker handed these bytes runs what was read, not what is on disk now.
    (rule,) = settings_from_bytes(raw, file=file).rules.rules
    assert rule.actions[0].source == GOOD.encode()  # type: ignore[attr-defined]
    toml, files = unbundle(raw)
    assert toml.startswith(b"[[rules]]") and files == {"a.py": GOOD.encode()}


def test_a_configuration_without_hooks_is_read_as_before(tmp_path: Path) -> None:
    write(tmp_path, '[[rules]]\nresponse_headers.set = { X-A = "1" }\n')
    assert read_config(tmp_path)[1] == (tmp_path / "trioproxy.toml").read_bytes()


# --- the syntax-tree checks and the lint --------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "name", "expected"),
    [
        ("async def check(:\n", "check", [(1, "invalid Python: invalid syntax")]),
        (GOOD, "other", [(None, "no hook named 'other' in this file (defined: check)")]),
        (
            "def check(exchange):\n    pass\n",
            "check",
            [(1, "check must be 'async def' (a hook runs on the event loop)")],
        ),
        (
            "async def check():\n    pass\n",
            "check",
            [(1, "check takes (); the request hook point passes (exchange)")],
        ),
        (
            "class C:\n    async def response(self, exchange):\n        pass\n",
            "C",
            [(2, "response takes (exchange); the response hook point passes (exchange, response)")],
        ),
        (
            "class C:\n    pass\n",
            "C",
            [
                (
                    1,
                    "class C defines no hook point (one of: request, response, access,"
                    " lifespan, request_body, response_body)",
                )
            ],
        ),
        ("check = make_hook()\n", "check", []),  # checked when imported
        (GOOD.replace("exchange", "exchange, extra=1"), "check", []),
    ],
)
def test_the_named_hook_is_checked_on_the_syntax_tree(
    source: str, name: str, expected: list[tuple[int | None, str]]
) -> None:
    assert lint(source, name) == expected


@pytest.mark.parametrize(
    "call",
    [
        "time.sleep(1)",
        "sleep(1)",
        "requests.get('http://x')",
        "urllib.request.urlopen('http://x')",
        "socket.create_connection(('x', 80))",
        "subprocess.run(['ls'])",
        "asyncio.run(main())",
        "open('/etc/passwd').read()",
    ],
)
def test_blocking_calls_in_hook_code_are_named_with_their_line(call: str) -> None:
    source = f"""
        import time, requests, urllib.request, socket, subprocess, asyncio
        from time import sleep

        async def check(exchange):
            x = 1
            {call}
    """
    (finding,) = lint(source)
    assert finding[0] == 7
    assert "blocks every connection" in finding[1] or "reads the disk" in finding[1]
    assert "# trioproxy: allow-blocking" in finding[1]


def test_the_opt_out_comment_silences_one_line() -> None:
    source = """
        import time

        async def check(exchange):
            time.sleep(0)  # trioproxy: allow-blocking
            time.sleep(1)
    """
    assert [line for line, _ in lint(source)] == [6]


def test_awaited_and_threaded_calls_are_not_flagged() -> None:
    source = """
        import time
        import trio
        from trioproxy.hooks import run_blocking

        async def check(exchange):
            await trio.sleep(1)
            await run_blocking(time.sleep, 1)

        KEYS = open(__file__).read() if False else None  # import time: not a hook's step
    """
    assert lint(source) == []


# --- rule order and reachability -----------------------------------------------------------------


def test_a_hook_rule_after_one_that_always_answers_never_applies(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '[[rules]]\ndeny = true\n[[rules]]\nhook = { file = "a.py", name = "check" }\n',
        **{"a.py": GOOD},
    )
    assert len(found) == 1 and "rules[2]: never applies: rules[1] (line 1)" in found[0]


def test_a_hook_rule_never_makes_later_rules_unreachable(tmp_path: Path) -> None:
    write(
        tmp_path,
        '[[rules]]\nhook = { file = "a.py", name = "check" }\n[[rules]]\ndeny = true\n',
        **{"a.py": GOOD},
    )
    assert len(load_settings(tmp_path).rules) == 2


def test_actions_are_collected_in_rule_order_and_unmatched_requests_pass(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        [[rules]]
        match.path_regex = '^/a/(?P<id>\\d+)$'
        hook = { file = "a.py", name = "check" }
        [[rules]]
        match.path_prefix = "/a/"
        hook = { file = "b.py", name = "check" }
        """,
        **{"a.py": GOOD, "b.py": GOOD},
    )
    engine = RuleEngine(load_settings(tmp_path).rules)
    decision = engine.evaluate(request_view(b"GET", b"/a/7", [(b"Host", b"x")], "1.2.3.4"), 0)
    assert [t.action.file for t in decision.actions] == ["a.py", "b.py"]  # type: ignore[attr-defined]
    assert decision.actions[0].captures is not None
    assert decision.actions[0].captures["id"] == b"7"
    assert engine.evaluate(request_view(b"GET", b"/b", [], "1.2.3.4"), 0) is PASS


# --- loading the bytes ---------------------------------------------------------------------------


def test_hook_files_are_compiled_under_a_private_name_and_never_imported() -> None:
    source = b"import sys\nMODULE = __name__\nasync def check(exchange):\n    pass\n"
    before = set(sys.modules)
    (loaded,) = load_hooks([HookAction("hooks/a.py", "check", source=source)]).values()
    assert loaded.request is not None and loaded.label == "hooks/a.py:check"
    module = loaded.request.__globals__["MODULE"]
    assert module.startswith("trioproxy._hookfiles.") and module not in sys.modules
    assert set(sys.modules) - before == set()


def test_two_loads_share_no_module_state() -> None:
    source = b"SEEN = []\nasync def check(exchange):\n    SEEN.append(1)\n"
    action = HookAction("a.py", "check", source=source)
    first = load_hooks([action])[action].request
    second = load_hooks([action])[action].request
    assert first is not None and second is not None
    assert first.__globals__["SEEN"] is not second.__globals__["SEEN"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (b"import no_such_module\n", "a.py:1: importing failed: ModuleNotFoundError"),
        (b"x = 1\n\nraise ValueError('no')\n", "a.py:3: importing failed: ValueError"),
        (b"check = 1\n", "a.py:check: not a hook"),
        (b"class check:\n    def request(self, e):\n        pass\n", "request must be an 'async"),
    ],
)
def test_a_hook_that_cannot_load_names_file_line_and_problem(source: bytes, expected: str) -> None:
    with pytest.raises(HookLoadError) as caught:
        load_hooks([HookAction("a.py", "check", source=source)])
    assert expected in str(caught.value)


def test_a_whole_body_point_takes_exchange_and_body() -> None:
    source = """
        from trioproxy.hooks import whole_body

        class C:
            @whole_body(max_bytes=100)
            async def response_body(self, exchange, body):
                return body

            async def request_body(self, exchange, chunk):
                return chunk
    """
    assert lint(source, "C") == [
        (
            9,
            "request_body takes (exchange, chunk); the request_body hook point passes"
            " (exchange, chunk, end)",
        )
    ]
