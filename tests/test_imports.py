"""Wildcard imports made explicit in training answers (generation/imports.py), and the
dataset's answers built with it."""

from mlx_repair.generation.imports import explicit_imports

ANSWER = '''from typing import *

from collections import *

def most_common_pair(items: List[Tuple[int, int]]) -> Optional[Tuple[int, int]]:
    counts = Counter(items)
    return max(counts, key=counts.get) if counts else None
'''


def run(code: str):
    namespace: dict = {}
    exec(compile(code, "<answer>", "exec"), namespace)
    return namespace["most_common_pair"]([(1, 2), (3, 4), (1, 2)]), namespace["most_common_pair"]([])


def test_a_wildcard_becomes_the_names_the_code_uses_and_behaves_the_same():
    explicit = explicit_imports(ANSWER)
    assert explicit.startswith("from typing import List, Optional, Tuple\n\nfrom collections import Counter\n\ndef")
    assert "*" not in explicit
    assert run(explicit) == run(ANSWER) == ((1, 2), None)


def test_a_wildcard_whose_names_go_unused_is_dropped():
    code = "from typing import *\nimport math\n\ndef f(x):\n    return math.floor(x)\n"
    assert explicit_imports(code) == "import math\n\ndef f(x):\n    return math.floor(x)\n"
    assert explicit_imports("from typing import *\n\n\ndef f(x):\n    return x\n") == "def f(x):\n    return x\n"


def test_other_modules_unparsable_code_and_shared_lines_are_left_alone():
    for code in (
        "from os import *\n\ndef f():\n    return getcwd()\n",  # not a module this reads
        "from typing import *\ndef f(:\n",  # does not parse
        "from typing import *; X: List = []\n",  # another statement on its line
        "from typing import List\n\ndef f() -> List: ...\n",  # no wildcard
    ):
        assert explicit_imports(code) == code
