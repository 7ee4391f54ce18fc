"""The similarity report on a synthetic class: two submissions are one solution with renamed
variables and new formatting, four are written independently; everyone has the same provided
code and the same stubs around their regions. The planted pair must rank first, clearly."""

from __future__ import annotations

import textwrap

import pytest

from autograder.course.similarity import Document, compare, student_code, write_report

PROVIDED = '''
import numpy as np


class Node:
    """A graph node (provided: the same in every submission)."""

    def __init__(self, name, inputs=()):
        self.name = name
        self.inputs = list(inputs)
        self.visits = 0

    def __repr__(self):
        return "Node(%s, %d inputs)" % (self.name, len(self.inputs))


def describe(nodes):
    """Provided helper that every student has verbatim."""
    lines = []
    for position, node in enumerate(nodes):
        lines.append(f"{position:3d}: {node.name} <- {[i.name for i in node.inputs]}")
    return "\\n".join(lines)
'''

SIGNATURES = {
    "topo_sort": 'def topo_sort(nodes):\n    """Nodes in topological order."""\n',
    "softmax_loss": 'def softmax_loss(Z, y):\n    """Mean softmax cross-entropy."""\n',
    "running_mean": 'def running_mean(values, window):\n    """Sliding means."""\n',
    "flatten": 'def flatten(nested):\n    """A flat list of a nested one."""\n',
}


def module(bodies: dict[str, str] | None) -> bytes:
    """The file: provided code, then each function with its region (a stub when None)."""
    text = PROVIDED
    for name, signature in SIGNATURES.items():
        body = "raise NotImplementedError()" if bodies is None else bodies[name]
        text += "\n\n" + signature + "    ### BEGIN YOUR SOLUTION (hw1)\n"
        text += textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"
        text += "    ### END YOUR SOLUTION\n"
    return text.encode()


ORIGINAL = {
    "topo_sort": """
        order, seen = [], set()
        for start in nodes:
            stack = [(start, False)]
            while stack:
                node, done = stack.pop()
                if done:
                    order.append(node)
                    continue
                if id(node) in seen:
                    continue
                seen.add(id(node))
                stack.append((node, True))
                for parent in reversed(node.inputs):
                    if id(parent) not in seen:
                        stack.append((parent, False))
        return order
    """,
    "softmax_loss": """
        shifted = Z - Z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1))
        picked = shifted[np.arange(Z.shape[0]), y]
        return float(np.mean(log_norm - picked))
    """,
    "running_mean": """
        total, out = 0.0, []
        for index, value in enumerate(values):
            total += value
            if index >= window:
                total -= values[index - window]
            if index >= window - 1:
                out.append(total / window)
        return out
    """,
    "flatten": """
        result = []
        pending = [iter(nested)]
        while pending:
            try:
                item = next(pending[-1])
            except StopIteration:
                pending.pop()
                continue
            if isinstance(item, (list, tuple)):
                pending.append(iter(item))
            else:
                result.append(item)
        return result
    """,
}

# The copy: every name changed, the layout changed, comments added.
COPY = {
    "topo_sort": """
        # my own topological sort
        result_list , visited_ids = [] , set( )
        for root_node in nodes :
            todo = [ ( root_node , False ) ]
            while todo :
                current , finished = todo.pop( )
                if finished :
                    result_list.append( current )  # post-order
                    continue
                if id( current ) in visited_ids :
                    continue
                visited_ids.add( id( current ) )
                todo.append( ( current , True ) )
                for inp in reversed( current.inputs ) :
                    if id( inp ) not in visited_ids :
                        todo.append( ( inp , False ) )
        return result_list
    """,
    "softmax_loss": """
        centred = Z - Z.max(axis = 1,
                            keepdims = True)
        lse = np.log(np.exp(centred).sum(axis = 1))   # log-sum-exp
        correct = centred[np.arange(Z.shape[0]),
                          y]
        return float(np.mean(lse - correct))
    """,
    "running_mean": """
        acc, means = 0.0, []
        for i, v in enumerate(values):
            acc += v
            if i >= window: acc -= values[i - window]
            if i >= window - 1: means.append(acc / window)
        return means
    """,
    "flatten": """
        flat = []
        iterators = [iter(nested)]
        while iterators:
            try:
                element = next(iterators[-1])
            except StopIteration:
                iterators.pop()
                continue
            if isinstance(element, (list, tuple)):
                iterators.append(iter(element))
            else:
                flat.append(element)
        return flat
    """,
}

INDEPENDENT = [
    {
        "topo_sort": """
            visited = set()
            ordering = []

            def visit(n):
                if n in visited:
                    return
                visited.add(n)
                for p in n.inputs:
                    visit(p)
                ordering.append(n)

            for n in nodes:
                visit(n)
            return ordering
        """,
        "softmax_loss": """
            probs = np.exp(Z) / np.exp(Z).sum(axis=1)[:, None]
            return -np.log(probs[range(len(y)), y]).mean()
        """,
        "running_mean": """
            return [sum(values[i:i + window]) / window for i in range(len(values) - window + 1)]
        """,
        "flatten": """
            if not isinstance(nested, (list, tuple)):
                return [nested]
            return [x for part in nested for x in flatten(part)]
        """,
    },
    {
        "topo_sort": """
            indegree = {}
            everything = list(nodes)
            k = 0
            while k < len(everything):
                for src in everything[k].inputs:
                    if src not in everything:
                        everything.append(src)
                k += 1
            consumers = {n: [] for n in everything}
            for n in everything:
                indegree[n] = len(n.inputs)
                for src in n.inputs:
                    consumers[src].append(n)
            ready = [n for n in everything if indegree[n] == 0]
            out = []
            while ready:
                n = ready.pop(0)
                out.append(n)
                for c in consumers[n]:
                    indegree[c] -= 1
                    if indegree[c] == 0:
                        ready.append(c)
            return out
        """,
        "softmax_loss": """
            m = np.max(Z, axis=1)
            lse = m + np.log(np.sum(np.exp(Z - m[:, None]), axis=1))
            loss = 0.0
            for row in range(Z.shape[0]):
                loss += lse[row] - Z[row, y[row]]
            return loss / Z.shape[0]
        """,
        "running_mean": """
            csum = np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=float)]))
            return list((csum[window:] - csum[:-window]) / window)
        """,
        "flatten": """
            output = []

            def walk(thing):
                if type(thing) in (list, tuple):
                    for sub in thing:
                        walk(sub)
                else:
                    output.append(thing)

            walk(nested)
            return output
        """,
    },
    {
        "topo_sort": """
            from collections import OrderedDict
            marks = OrderedDict()
            def dfs(v):
                marks[v] = 'grey'
                for w in v.inputs:
                    if marks.get(w) is None:
                        dfs(w)
                marks[v] = 'black'
                finished.append(v)
            finished = []
            for v in nodes:
                if marks.get(v) is None:
                    dfs(v)
            return finished
        """,
        "softmax_loss": """
            onehot = np.zeros_like(Z)
            onehot[np.arange(len(y)), y] = 1
            logits = Z - np.log(np.sum(np.exp(Z), axis=1, keepdims=True))
            return -np.sum(onehot * logits) / len(y)
        """,
        "running_mean": """
            import collections
            buf = collections.deque(maxlen=window)
            res = []
            for x in values:
                buf.append(x)
                if len(buf) == window:
                    res.append(sum(buf) / float(window))
            return res
        """,
        "flatten": """
            stack, acc = [nested], []
            while stack:
                top = stack.pop()
                if isinstance(top, (list, tuple)):
                    stack.extend(reversed(top))
                else:
                    acc.append(top)
            return acc
        """,
    },
    {
        "topo_sort": """
            order = []
            def place(node, path=()):
                if node in order:
                    return
                assert node not in path, "cycle"
                [place(i, path + (node,)) for i in node.inputs]
                order.append(node)
            [place(n) for n in nodes]
            return order
        """,
        "softmax_loss": """
            batch = Z.shape[0]
            exps = np.exp(Z - np.amax(Z))
            softmax = exps / np.sum(exps, axis=-1, keepdims=True)
            chosen = np.take_along_axis(softmax, np.asarray(y)[:, None], axis=1)
            return float(-np.log(chosen).sum() / batch)
        """,
        "running_mean": """
            n = len(values)
            if n < window:
                return []
            window_sum = sum(values[:window])
            means = [window_sum / window]
            for j in range(window, n):
                window_sum = window_sum + values[j] - values[j - window]
                means.append(window_sum / window)
            return means
        """,
        "flatten": """
            import itertools
            while any(isinstance(e, (list, tuple)) for e in nested):
                nested = list(itertools.chain.from_iterable(
                    e if isinstance(e, (list, tuple)) else [e] for e in nested))
            return list(nested)
        """,
    },
]

PATH = "needle/autograd.py"
BLANK = {PATH: module(None)}


def _class() -> list[Document]:
    students = {"ada": ORIGINAL, "bea": INDEPENDENT[0], "cid": INDEPENDENT[1]}
    students.update({"dot": COPY, "eve": INDEPENDENT[2], "fay": INDEPENDENT[3]})
    return [
        Document(name, name, student_code({PATH: module(bodies)}, BLANK, ("hw1",)))
        for name, bodies in students.items()
    ]


def test_the_submissions_run():
    """The synthetic solutions are real solutions (so the class is a fair one)."""
    import numpy as np

    for bodies in [ORIGINAL, COPY, *INDEPENDENT]:
        space: dict = {}
        exec(module(bodies).decode(), space)
        a = space["Node"]("a")
        b = space["Node"]("b", [a])
        c = space["Node"]("c", [a, b])
        assert [n.name for n in space["topo_sort"]([c])] == ["a", "b", "c"]
        assert space["running_mean"]([1, 2, 3, 4], 2) == pytest.approx([1.5, 2.5, 3.5])
        assert space["flatten"]([1, [2, (3, [4])], 5]) == [1, 2, 3, 4, 5]
        Z, y = np.array([[1.0, 2.0, 0.5], [0.1, 0.2, 3.0]]), np.array([1, 2])
        expected = np.mean(np.log(np.exp(Z).sum(1)) - Z[[0, 1], y])
        assert space["softmax_loss"](Z, y) == pytest.approx(expected)


def test_only_student_written_regions_are_compared():
    written = student_code({PATH: module(ORIGINAL)}, BLANK, ("hw1",))[PATH]
    assert "stack.append((node, True))" in written
    assert "class Node" not in written and "def describe" not in written
    assert "NotImplementedError" not in written
    untouched = student_code({PATH: module(None)}, BLANK, ("hw1",))
    assert untouched == {}  # only stubs: nothing written, nothing to compare
    no_markers = module(ORIGINAL).decode().replace("### BEGIN YOUR SOLUTION (hw1)\n", "")
    no_markers = no_markers.replace("### END YOUR SOLUTION\n", "")
    fallback = student_code({PATH: no_markers.encode()}, BLANK, ("hw1",))[PATH]
    assert "stack.append((node, True))" in fallback and "def describe" not in fallback


def test_the_planted_pair_ranks_first_by_a_margin(tmp_path):
    documents = _class()
    pairs = compare(documents, BLANK)
    assert len(pairs) == 15
    top, runner_up = pairs[0], pairs[1]
    assert {top.a.key, top.b.key} == {"ada", "dot"}
    assert top.share_a > 0.6 and top.share_b > 0.6
    assert runner_up.score < top.score - 0.3
    page = write_report(tmp_path, "hw1 similarity", pairs, 5, len(documents))
    text = page.read_text()
    first = text.index("<h2 id='pair-1'>")
    assert "ada" in text[first : first + 200] and "dot" in text[first : first + 200]
    section = text[first : text.index("<h2 id='pair-2'>")]
    assert section.count("<pre>") == 2 and "<mark>" in section
    assert "result_list" in section and "visited_ids" in section  # the copy's own names
    assert (tmp_path / "similarity.csv").read_text().count("\n") == 16


def test_provided_code_alone_makes_no_pair_similar():
    documents = [Document(n, n, student_code({PATH: module(None)}, BLANK, ("hw1",))) for n in "ab"]
    documents += [Document("c", "c", {PATH: PROVIDED})]  # markers deleted, nothing written
    assert all(p.score == 0 for p in compare(documents, BLANK))
