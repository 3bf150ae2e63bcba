"""What account management can answer with besides success."""

from __future__ import annotations

from coursehub.core.errors import Conflict, Forbidden, NotFound


class UserNotFound(NotFound):
    code = "user_not_found"
    title = "No such user"


class EmailTaken(Conflict):
    """The email is in use by another account (`errors` names every taken field)."""

    code = "email_taken"
    title = "The email is already in use"


class UsernameTaken(Conflict):
    code = "username_taken"
    title = "The username is already in use"


class LastAdmin(Conflict):
    code = "last_admin"
    title = "The store's last admin cannot be demoted or deleted"


class AccountRemoved(Conflict):
    code = "account_removed"
    title = "The account was removed"


class WrongPassword(Forbidden):
    """The current password a sensitive change asks for does not match."""

    code = "wrong_password"
    title = "The password is wrong"
