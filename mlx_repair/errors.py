"""The one exception type for mistakes a user can fix (bad file, unknown model, bad key).

The CLI prints these as a single line (what, where, what to do) and exits 2; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    pass
