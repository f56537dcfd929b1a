"""`keysafe decode` (service/decode.py) refuses input that is not JSON with MALFORMED_REQUEST,
never an internal error."""

from __future__ import annotations

import pytest

from keysafe.errors import MalformedRequestError
from keysafe.service.decode import decode_payload


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{bad", "does not parse (Expecting property name"),
        # json.loads raises a plain ValueError for an integer longer than Python converts; it
        # was read as a JSONDecodeError's .msg, which a plain ValueError does not have.
        ('{"value": ' + "1" * 5000 + "}", "does not parse."),
    ],
)
def test_input_that_is_not_json_is_a_malformed_request(text: str, says: str) -> None:
    with pytest.raises(MalformedRequestError) as caught:
        decode_payload(text)
    assert says in caught.value.what
