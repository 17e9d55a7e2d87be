"""camserver's dialogue (protocols.camserver): what real clients send and parse, to the character.

The references are the clients: MAX IV's Pilatus client (its reply regexes
and ``\\0``), LIMA's Pilatus plugin (``\\x18``, its captures of a real
camserver) and areaDetector's driver (``\\n``, the file naming rule).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from protocols import camserver
from protocols.camserver import Reply, SeriesNames


def test_the_command_set_has_every_acquisition_and_setthreshold_once() -> None:
    assert len(set(camserver.COMMANDS)) == len(camserver.COMMANDS)
    assert set(camserver.ACQUISITIONS) <= set(camserver.COMMANDS)
    assert set(camserver.BURSTS) <= set(camserver.ACQUISITIONS)
    assert "setthreshold" in camserver.COMMANDS


@pytest.mark.parametrize(
    ("word", "command"),
    [
        ("nimages", "nimages"),
        ("ni", "nimages"),
        ("ExpT", "exptime"),
        ("expp", "expperiod"),
        ("SetEnergy", "setenergy"),
        ("sete", "setenergy"),
        ("setthr", "setthreshold"),
        ("expo", "exposure"),
        ("k", "k"),
        ("c", "camcmd"),
        ("ex", None),
        ("set", None),
        ("threshold", None),
        ("nimagesx", None),
    ],
)
def test_a_word_names_a_command_exactly_or_by_a_unique_prefix_in_any_case(
    word: str, command: str | None
) -> None:
    assert camserver.resolve_command(word) == command


@pytest.mark.parametrize("end", [b"\0", b"\x18", b"\n", b"\r\n"])
def test_commands_end_with_nul_cancel_or_newline_as_real_clients_send(end: bytes) -> None:
    """MAX IV's client ends commands with \\0, LIMA with \\x18, areaDetector with \\n."""
    lines, rest = camserver.read_commands(b"nimages 3" + end + b"exptime 0.1" + end + b"expp")

    assert lines == [("nimages 3", end[-1:]), ("exptime 0.1", end[-1:])]
    assert rest == b"expp"


def test_a_command_cut_across_reads_completes_and_blank_lines_are_no_commands() -> None:
    lines, rest = camserver.read_commands(b"\0\n nima")
    assert (lines, rest) == ([], b" nima")

    lines, rest = camserver.read_commands(rest + b"ges  7 \r\0")

    assert (lines, rest) == ([("nimages  7", b"\0")], b"")
    assert camserver.split_command("nimages  7") == ("nimages", "7")
    assert camserver.split_command("k") == ("k", "")


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("15 OK N images set to: 10", Reply(15, True, "N images set to: 10")),
        (
            "15 OK  Starting 0.1000000 second background: 2024-Jun-01T12:00:00.000",
            Reply(15, True, " Starting 0.1000000 second background: 2024-Jun-01T12:00:00.000"),
        ),
        ("10 OK /ramdisk/images/", Reply(10, True, "/ramdisk/images/")),
        ("7 OK /ramdisk/images/scan_00002.cbf", Reply(7, True, "/ramdisk/images/scan_00002.cbf")),
        ("7 OK", Reply(7, True, "")),
        ("7 ERR ERROR: RAM disk full", Reply(7, False, "ERROR: RAM disk full")),
        ("13 ERR kill", Reply(13, False, "kill")),
        ("1 ERR *** Unrecognized command: foo", Reply(1, False, "*** Unrecognized command: foo")),
        (
            "15 OK  Settings: mid gain;\n Trim file:",
            Reply(15, True, " Settings: mid gain;\n Trim file:"),
        ),
    ],
)
def test_a_reply_is_code_ok_or_err_and_text_both_ways(text: str, reply: Reply) -> None:
    assert camserver.parse_reply(text) == reply
    if reply.text:
        assert camserver.format_reply(reply.code, reply.ok, reply.text) == text


@pytest.mark.parametrize("text", ["", "OK", "15", "15 OKAY", "x 15 OK", "Streamer: idle"])
def test_anything_else_is_no_reply(text: str) -> None:
    assert camserver.parse_reply(text) is None


def test_replies_end_in_cancel_and_may_arrive_in_pieces() -> None:
    wire = camserver.encode_reply("15 OK N images set to: 3") + camserver.encode_reply(
        "13 ERR kill"
    )

    assert wire == b"15 OK N images set to: 3\x1813 ERR kill\x18"
    cut = wire.index(b" kill")
    assert camserver.read_replies(wire[:cut]) == (["15 OK N images set to: 3"], b"13 ERR")
    assert camserver.read_replies(b"13 ERR" + wire[cut:]) == (["13 ERR kill"], b"")
    assert camserver.encode_reply("7 OK /ramdisk/\u00e9.cbf") == b"7 OK /ramdisk/?.cbf\x18"


@pytest.mark.parametrize(
    ("command", "value", "reply"),
    [
        ("exptime", 0.1, "15 OK Exposure time set to: 0.1000000 sec."),
        ("expperiod", 0.1, "15 OK Exposure period set to: 0.1000000 sec"),
        ("nimages", 10, "15 OK N images set to: 10"),
        ("nexpframe", 1, "15 OK Exposures per frame set to: 1"),
        ("delay", 0.0, "15 OK Delay time set to: 0.0000000 sec."),
        ("setenergy", 12_000.0, "15 OK Energy setting: 12000 eV"),
    ],
)
def test_settings_read_back_in_the_texts_clients_parse(
    command: str, value: float, reply: str
) -> None:
    """MAX IV's client's regexes; ``expperiod``'s text has no final dot."""
    assert camserver.setting_reply(command, value) == reply


def test_the_proxy_learns_the_settings_from_the_texts_camserver_sends() -> None:
    assert camserver.read_back(camserver.setting_reply("nimages", 7)) == {"nimages": 7}
    assert camserver.read_back(camserver.setting_reply("exptime", 0.25)) == {"exptime": 0.25}
    assert camserver.read_back(camserver.setting_reply("expperiod", 0.5)) == {"expperiod": 0.5}
    assert camserver.read_back(camserver.setting_reply("setenergy", 8050)) == {"energy": 8050}
    assert camserver.read_back(camserver.setting_reply("delay", 0.1)) == {}
    assert camserver.read_back("15 ERR ERROR: N images set to: 7") == {}
    assert camserver.read_back("7 OK /ramdisk/N images set to: 7") == {}


def test_refusals_and_unknown_commands_read_as_camserver_writes_them() -> None:
    assert camserver.refusal(10, "x: no such directory") == "10 ERR ERROR: x: no such directory"
    assert camserver.unrecognized("foo") == "1 ERR *** Unrecognized command: foo"
    assert camserver.reply_code("imgpath") == camserver.CODE_IMGPATH == 10
    assert camserver.reply_code("exptime") == camserver.reply_code("") == 15


def test_an_accepted_acquisition_answers_with_its_time_to_the_millisecond() -> None:
    when = datetime(2011, 8, 4, 15, 27, 22, 593_999)

    assert camserver.starting_reply(0.197, when) == (
        "15 OK  Starting 0.1970000 second background: 2011-Aug-04T15:27:22.593"
    )


def test_the_threshold_reads_back_as_lima_captured_it() -> None:
    assert camserver.threshold_reply("mid", 6300) == (
        "15 OK  Settings: mid gain; threshold: 6300 eV; vcmp: 0.654 V\n Trim file:\n  (nil)"
    )
    assert camserver.GAINS["uhighg"] == "ultra high"


@pytest.mark.parametrize(
    ("command", "nimages", "burst"),
    [
        ("exposure", 2, True),
        ("exttrigger", 2, True),
        ("exposure", 1, False),
        ("extmtrigger", 2, False),
        ("extenable", 2, False),
    ],
)
def test_only_a_burst_of_frames_needs_the_readout_time_between_them(
    command: str, nimages: int, burst: bool
) -> None:
    assert camserver.is_burst(command, nimages) is burst
    assert camserver.READOUT_S == 0.00095


@pytest.mark.parametrize(
    ("given", "count", "first", "second"),
    [
        ("test6.cbf", 2, "test6_00000.cbf", "test6_00001.cbf"),
        ("test6_.cbf", 2, "test6_00000.cbf", "test6_00001.cbf"),
        ("test6_014.cbf", 2, "test6_014.cbf", "test6_015.cbf"),
        ("test6_0008.cbf", 2, "test6_0008.cbf", "test6_0009.cbf"),
        ("test6_998.cbf", 1000, "test6_00998.cbf", "test6_00999.cbf"),
        ("a_12.cbf", 2, "a_12_00000.cbf", "a_12_00001.cbf"),
        ("single.cbf", 1, "single.cbf", None),
    ],
)
def test_file_names_follow_camservers_rule(
    given: str, count: int, first: str, second: str | None
) -> None:
    """The rule as areaDetector's Pilatus documentation gives it; nimages 1 keeps the name."""
    names = SeriesNames.of(given, count)
    assert names.name(0) == first
    assert names.frame_of(first) == 0
    if second is not None:
        assert names.name(1) == second
        assert names.frame_of(second) == 1
    assert names.frame_of(f".{first}.tmp") is None
    assert names.frame_of("other_00000.cbf") is None


def test_only_the_files_of_the_series_are_its_frames() -> None:
    names = SeriesNames.of("run_0100.cbf", 3)

    assert [names.frame_of(f"run_{n:04d}.cbf") for n in (99, 100, 102, 103)] == [None, 0, 2, None]
    assert names.frame_of("run_00101.cbf") is None
    assert names.frame_of("run_01x1.cbf") is None
    assert SeriesNames.of("run", 2).name(1) == "run_00001"
