"""``followupd demo``: the real pipeline on a sample mailbox, in a temporary directory, with a fixed clock."""
