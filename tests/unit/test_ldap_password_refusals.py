"""How a directory's refusal of a password becomes DirectoryPasswordRejected: the password
policy response control (BER), 389-DS's, Samba's and Windows' diagnostic messages."""

from __future__ import annotations

import pytest

from bridge.ldap.passwords import PPOLICY_OID, DirectoryPasswordRejected, ppolicy_response_error, rejection


def refused(message: str = "", control: bytes | None = None, description: str = "constraintViolation") -> dict:
    controls = {PPOLICY_OID: {"criticality": False, "value": control}} if control is not None else {}
    return {"result": 19, "description": description, "message": message, "controls": controls}


@pytest.mark.parametrize(("value", "error"), [
    (b"0\x03\x81\x01\x06", 6),  # OpenLDAP: error passwordTooShort
    (b"0\x84\x00\x00\x00\x03\x81\x01\x05", 5),  # 389-DS: a 4-byte long-form length
    (b"0\x08\xa0\x03\x80\x01\x05\x81\x01\x08", 8),  # a warning (timeBeforeExpiration) before the error
    (b"0\x05\xa0\x03\x81\x01\x02", None),  # a warning only (graceAuthNsRemaining)
    (b"0\x00", None),
    (b"0\x05\x81\x01", None),  # truncated
    (b"\x04\x00", None),  # not a SEQUENCE
    (b"", None),
])
def test_the_ppolicy_response_error_is_read(value: bytes, error: int | None):
    assert ppolicy_response_error(value) == error


@pytest.mark.parametrize(("result", "code"), [
    (refused("Password is too short for policy", b"0\x03\x81\x01\x06"), "too_short"),
    (refused("Password is in history of old passwords", b"0\x03\x81\x01\x08"), "in_history"),
    (refused("Password is too young to change", b"0\x03\x81\x01\x07"), "too_young"),
    (refused("", b"0\x03\x81\x01\x03"), "not_allowed"),
    (refused("", b"0\x03\x81\x01\x04"), "must_supply_old"),
    (refused("Failed to update password\n", b"0\x84\x00\x00\x00\x03\x81\x01\x05"), "insufficient_quality"),
    # 389-DS over an LDAP modify, with and without the control
    (refused("invalid password syntax - password must be at least 8 characters long",
             b"0\x84\x00\x00\x00\x03\x81\x01\x05"), "too_short"),
    (refused("invalid password syntax - password must contain at least 3 character categories"),
     "insufficient_quality"),
    (refused("password in history"), "in_history"),
    (refused("password within password minimum age"), "too_young"),
    # Windows: the Win32 error at the head of the message, no words for a user after it
    (refused("0000052D: SvcErr: DSID-031A126C, problem 5003 (WILL_NOT_PERFORM), data 0\n",
             description="unwillingToPerform"), "policy"),
    (refused("00000056: AtrErr: DSID-03190F80, #1:\n\t0: 00000056: DSID-03190F80, problem 1005 "
             "(CONSTRAINT_ATT_TYPE), data 0, Att 9005a (unicodePwd)\n"), "wrong_password"),
    (refused("", description="insufficientAccessRights"), "not_allowed"),
    (refused("", description="confidentialityRequired"), "not_allowed"),
    (refused("", description="noSuchObject"), "policy"),
    (refused("something new", description="other"), "policy"),
])
def test_refusals_get_their_code_and_a_sentence(result: dict, code: str):
    rejected = rejection(result, active_directory=result["message"].startswith("0000"))
    assert rejected.code == code
    assert rejected.message.endswith(".") and "DSID" not in rejected.message


def test_samba_and_389_words_become_the_message():
    said = rejection(refused("0000052D: Constraint violation - check_password_restrictions: the password is too "
                             "short. It should be equal or longer than 7 characters!"), active_directory=True)
    assert (said.code, said.message) == (
        "too_short", "The password is too short. It should be equal or longer than 7 characters.")
    said = rejection(refused("invalid password syntax - password must be at least 8 characters long"))
    assert said.message == "Password must be at least 8 characters long."


def test_a_message_that_holds_a_password_is_not_repeated():
    said = rejection(refused("invalid password syntax - password 'Secret-Pw-1' is based on your name"),
                     ("Secret-Pw-1",))
    assert "Secret-Pw-1" not in said.message and said.code == "insufficient_quality"
    said = rejection(refused("the new value Secret-Pw-1 is refused", description="other"), ("secret-pw-1",))
    assert "Secret-Pw-1" not in said.message


def test_the_exception_carries_code_and_message():
    refusal = DirectoryPasswordRejected("too_short")
    assert refusal.code == "too_short" and str(refusal) == refusal.message
    assert DirectoryPasswordRejected("no such code", "x.").code == "policy"
