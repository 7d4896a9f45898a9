"""Commands changing one contact at the same time take turns: no tag, tier or note is lost, on either
backend (PostgreSQL's READ COMMITTED would let the second writer overwrite the first without the row lock)."""

from __future__ import annotations

import threading

from sqlalchemy import select

from followupd.store import contacts_repo
from followupd.store.db import Database
from followupd.store.models import Account, AddressRow, Contact

WRITERS = 4
ROUNDS = 15
ADA = "ada@example.com"


def seed(db: Database) -> None:
    with db.write() as session:
        account = Account(name="main", email="me@example.org")
        session.add(account)
        session.flush()
        contact = Contact(account_id=account.id, name="Ada", status="active", tags="", notes="")
        session.add(contact)
        session.flush()
        session.add(AddressRow(account_id=account.id, email=ADA, contact_id=contact.id))


def test_concurrent_tag_and_note_changes_are_all_kept(db: Database) -> None:
    seed(db)
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def writer(n: int) -> None:
        start.wait()
        try:
            for r in range(ROUNDS):
                with db.write() as session:
                    contacts_repo.update_settings(session, ADA, add_tags=[f"w{n}r{r}"], note=f"note {n}/{r}")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with db.read() as session:
        tags, notes = session.execute(select(Contact.tags, Contact.notes)).one()
    expected = {f"w{n}r{r}" for n in range(WRITERS) for r in range(ROUNDS)}
    assert set(contacts_repo.split_tags(tags)) == expected
    assert len(notes.splitlines()) == WRITERS * ROUNDS
