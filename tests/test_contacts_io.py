"""Contacts in and out: the CSV reader's validation (every problem, with its line), CSV and vCard 3.0 export,
and ``followupd contacts import / export`` end to end (nothing written when any row is invalid)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from followupd import contacts_io
from followupd.errors import UsageError
from followupd.store.contacts_repo import ContactRecord, ContactView
from followupd.store.models import AddressRow, Contact
from tests.servers.plugin import DatabaseTemplates, DatabaseUrlFactory
from tests.test_drafts_cli import World, make_runner
from tests.test_plan_engine import ADA, BOB, ME
from tests.test_review_engine import WorldTemplate, copy_world, draft_ids, world_template

TIERS = ("close", "regular", "distant")


def test_read_csv_reads_every_column() -> None:
    text = (
        "Email,name,tier,tags,notes,cadence\n"
        'Ada@Example.com, Ada  Lovelace ,close,"pycon, ml","Met at PyCon\nlikes maths",45d\n'
        "grace@example.org,,,a;b;;c,,\n"
        ",,,,,\n"
        "bob@example.net\n"
    )
    records = contacts_io.read_csv(text, tiers=TIERS)
    assert records == [
        ContactRecord(
            2, "ada@example.com", "Ada Lovelace", "close", ("pycon", "ml"), "Met at PyCon\nlikes maths", 45.0
        ),
        ContactRecord(4, "grace@example.org", None, None, ("a", "b", "c"), None, None),
        ContactRecord(6, "bob@example.net"),
    ]


def test_read_csv_reports_every_problem_with_its_line() -> None:
    text = (
        "email,name,tier,phone,cadence\n"  # line 1: unknown column
        "not-an-address,,,,\n"  # 2
        "ada@example.com,,vip,,\n"  # 3
        "grace@example.org,,,,sometimes\n"  # 4
        '"multi\nline@example.org",,,,\n'  # 5-6: an address with a newline
        "ada@example.com,,,,\n"  # 7: twice
        f"{ME},,,,\n"  # 8: the user
        "x@example.org,,,,,,\n"  # 9: too many cells
        ",Nobody,,,\n"  # 10: no email
    )
    with pytest.raises(UsageError) as info:
        contacts_io.read_csv(text, tiers=TIERS, own={ME})
    message = str(info.value)
    assert "9 problem(s); nothing was imported" in message
    for expected in (
        "line 1: unknown column 'phone'",
        "line 2: 'not-an-address' is not an email address",
        "line 3: unknown tier 'vip' (configured: close, distant, regular)",
        "line 4: cadence 'sometimes' is not a duration",
        "line 5: 'multi\\nline@example.org' is not an email address",
        "line 7: ada@example.com is already on line 3",
        f"line 8: {ME} is your own address",
        "line 9: 7 cells but 5 columns in the header",
        "line 10: the email is missing",
    ):
        assert expected in message, expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the file is empty"),
        ("name,tier\nAda,close\n", "an 'email' column is required"),
        ("email,email\na@b.org,c@d.org\n", "column 'email' appears twice"),
        ('email\n"a@b.org\n', "line 2: unexpected end of data"),
    ],
)
def test_read_csv_refuses_a_bad_header_or_file(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        contacts_io.read_csv(text, tiers=TIERS)


def view(**fields: object) -> ContactView:
    base: dict[str, object] = {
        "id": 1, "email": "ada@example.com", "name": "Ada Lovelace", "addresses": ("ada@example.com",),
        "status": "active", "tier": None, "tags": (), "notes": "", "first_seen_at": None,
        "last_inbound_at": None, "last_outbound_at": None, "last_meeting_at": None, "last_touch_at": None,
        "owes_reply": False,
    }  # fmt: skip
    return ContactView(**{**base, **fields})  # type: ignore[arg-type]


def test_csv_export_reads_back_the_same() -> None:
    views = [
        view(tier="close", tags=("pycon", "ml"), notes='Met, at PyCon\n"maths"', cadence_days=45.0),
        view(id=2, email="grace@example.org", name="", addresses=("grace@example.org",)),
    ]
    out = io.StringIO()
    assert contacts_io.write_csv(views, out) == 2
    assert out.getvalue().splitlines()[0] == "email,name,tier,tags,notes,cadence"
    back = contacts_io.read_csv(out.getvalue(), tiers=TIERS)
    assert back[0] == ContactRecord(2, "ada@example.com", "Ada Lovelace", "close", ("pycon", "ml"),
                                    "Met, at PyCon\n\"maths\"", 45.0)  # fmt: skip
    assert back[1] == ContactRecord(4, "grace@example.org")  # Ada's notes take lines 2 and 3


def test_vcard_3_0() -> None:
    long_note = "Talked about; compilers, \\ and " + "a very long story about Babbage " * 4
    card = view(
        addresses=("ada@example.com", "ada@work.example"),
        tags=("pycon", "a,b"),
        notes=long_note + "\nsecond line",
        tier="close",
        cadence_days=30.0,
        status="muted",
    )
    out = io.StringIO(newline="")
    contacts_io.write_vcards(
        [card, view(id=2, name="", email="x@example.org", addresses=("x@example.org",))], out
    )
    text = out.getvalue()
    assert text.count("BEGIN:VCARD\r\nVERSION:3.0\r\n") == 2 and text.endswith("END:VCARD\r\n")
    assert "\n" not in text.replace("\r\n", "")
    physical = text.split("\r\n")
    assert all(len(line.encode()) <= 75 for line in physical)
    unfolded = text.replace("\r\n ", "").split("\r\n")
    assert "FN:Ada Lovelace" in unfolded and "N:Lovelace;Ada;;;" in unfolded
    assert "EMAIL;TYPE=INTERNET,PREF:ada@example.com" in unfolded
    assert "EMAIL;TYPE=INTERNET:ada@work.example" in unfolded
    assert "CATEGORIES:pycon,a\\,b" in unfolded
    assert "NOTE:Talked about\\; compilers\\, \\\\ and a very" in next(
        u for u in unfolded if u.startswith("NOTE:")
    )
    assert next(u for u in unfolded if u.startswith("NOTE:")).endswith("\\nsecond line")
    assert "X-FOLLOWUPD-TIER:close" in unfolded and "X-FOLLOWUPD-CADENCE:30d" in unfolded
    assert "X-FOLLOWUPD-STATUS:muted" in unfolded
    assert "FN:x@example.org" in unfolded and "N:;;;;" in unfolded


def test_vcard_folding_never_splits_a_character() -> None:
    lines = contacts_io._fold("NOTE:" + "é" * 100).split("\r\n")
    assert all(len(line.encode()) <= 75 for line in lines)
    assert "".join(line.removeprefix(" ") for line in lines) == "NOTE:" + "é" * 100


# --- the commands -------------------------------------------------------------------------------------------


@pytest.fixture
def template(
    db_backend: str, database_templates: DatabaseTemplates, tmp_path_factory: pytest.TempPathFactory
) -> WorldTemplate:
    return world_template(db_backend, database_templates, tmp_path_factory)


@pytest.fixture
def world(
    template: WorldTemplate, tmp_path: Path, database_url_factory: DatabaseUrlFactory
) -> Iterator[World]:
    config_path, db, config = copy_world(template, tmp_path, database_url_factory)
    yield World(config_path, db, config, make_runner(config_path), draft_ids(db))
    db.dispose()


def counts(world: World) -> tuple[int, int]:
    with world.db.read() as session:
        contacts = session.scalar(select(func.count()).select_from(Contact)) or 0
        addresses = session.scalar(select(func.count()).select_from(AddressRow)) or 0
    return contacts, addresses


def test_import_creates_and_updates(world: World, tmp_path: Path) -> None:
    before = counts(world)
    file = tmp_path / "people.csv"
    file.write_text(
        "\ufeffemail,name,tier,tags,notes,cadence\n"  # as Excel writes it
        f"{ADA},Ada Lovelace,close,pycon,Met at PyCon,45d\n"
        'grace@example.org,Grace Hopper,regular,"navy,cobol",,\n'
    )
    dry = world.run("contacts", "import", str(file), "--dry-run", "--json").json()
    assert dry == {"created": 1, "updated": 1, "dry_run": True}
    assert counts(world) == before
    done = world.run("contacts", "import", str(file))
    assert done.out == "imported 2 contact(s): 1 new, 1 updated\n"
    assert counts(world) == (before[0] + 1, before[1] + 1)
    listed = {c["email"]: c for c in world.run("contacts", "list", "--json").json()}  # type: ignore[union-attr]
    assert (listed[ADA]["name"], listed[ADA]["tier"], listed[ADA]["cadence_days"]) == (
        "Ada Lovelace",
        "close",
        45,
    )
    grace = listed["grace@example.org"]
    assert (grace["name"], grace["tags"], grace["status"]) == ("Grace Hopper", ["navy", "cobol"], "active")
    again = world.run("contacts", "import", str(file))
    assert again.out == "imported 2 contact(s): 0 new, 2 updated\n" and counts(world)[0] == before[0] + 1


def test_an_invalid_file_writes_nothing(world: World, tmp_path: Path) -> None:
    before = counts(world)
    file = tmp_path / "people.csv"
    file.write_text(f"email,tier\nnew@example.org,close\n{BOB},gold\nbroken,\n")
    failed = world.run("contacts", "import", str(file))
    assert failed.code == 2 and "2 problem(s); nothing was imported" in failed.err
    assert (
        "line 3: unknown tier 'gold'" in failed.err
        and "line 4: 'broken' is not an email address" in failed.err
    )
    assert counts(world) == before
    with world.db.write() as session:  # a mailing list's address, learned by a scan
        session.add(AddressRow(account_id=1, email="list@lists.example.org", is_list=True,
                               excluded_reason="list-address"))  # fmt: skip
    file.write_text("email\nnew@example.org\nlist@lists.example.org\n")
    refused = world.run("contacts", "import", str(file))
    assert refused.code == 2 and "line 3: list@lists.example.org is a mailing list address" in refused.err
    assert counts(world) == (before[0], before[1] + 1)  # only the list address added above


def test_export_then_import_changes_nothing(world: World, tmp_path: Path) -> None:
    world.run(
        "contacts",
        "set",
        ADA,
        "--tier",
        "close",
        "--tag",
        "pycon",
        "--note",
        "likes, commas",
        "--cadence",
        "6w",
    )
    exported = world.run("contacts", "export").out
    assert exported.splitlines()[0] == "email,name,tier,tags,notes,cadence"
    assert f'{ADA},,close,pycon,"likes, commas",6w' in exported
    file = tmp_path / "out.csv"
    file.write_text(exported)
    before = world.run("contacts", "list", "--json").out
    assert world.run("contacts", "import", str(file)).code == 0
    assert world.run("contacts", "list", "--json").out == before
    vcf = tmp_path / "out.vcf"
    written = world.run("contacts", "export", "--format", "vcard", "--output", str(vcf))
    assert written.code == 0 and vcf.read_bytes().count(b"BEGIN:VCARD\r\n") == counts(world)[0]
