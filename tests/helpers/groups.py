"""xdist groups: the tests that use one session fixture run in one worker (`--dist loadgroup`), so it is built once."""

import pytest

SWEPT_GROUP = pytest.mark.xdist_group("swept")  # conftest.swept: paper_main with 2 seeds and its report
