"""docent.blocks: a loader's plain-text chunk read back into prose sentences, lists, code and skipped lines."""

import pytest

from docent.blocks import BlockKind, Unit, blocks, is_code_line, render, units

ACTOR_PROSE = (
    "The ray.remote decorator indicates that instances of the Counter class will be actors. "
    "Each actor runs in its own Python process."
)
COUNTER_CLASS = "@ray.remote\nclass Counter:\n    def __init__(self):\n        self.value = 0"
# A tab label, an explanation, then the example's code in two paragraphs (as Ray's docs have it).
TABBED_EXAMPLE = f"Python\n\n{ACTOR_PROSE}\n\nimport ray\n\n{COUNTER_CLASS}"


def kinds(found: list[Unit]) -> list[BlockKind]:
    return [u.kind for u in found]


def of_kind(found: list[Unit], kind: BlockKind) -> list[Unit]:
    return [u for u in found if u.kind == kind]


# --- prose, labels and code ------------------------------------------------------------


def test_a_tab_label_is_skipped_and_prose_splits_into_its_sentences():
    text = f"Python\n\n{ACTOR_PROSE}\n\nimport ray\nray.init()\n\n{COUNTER_CLASS}"
    found = units(text)

    assert all("Python" != u.text for u in found), "the tab label is no unit"
    prose = of_kind(found, BlockKind.PROSE)
    assert [u.text for u in prose] == [
        "The ray.remote decorator indicates that instances of the Counter class will be actors.",
        "Each actor runs in its own Python process.",
    ]
    assert all(u.quotable for u in prose)
    assert len({u.paragraph for u in prose}) == 1, "both sentences come from one paragraph"


def test_code_paragraphs_separated_by_a_blank_line_are_one_block_with_their_indentation():
    text = f"Python\n\n{ACTOR_PROSE}\n\nimport ray\nray.init()\n\n{COUNTER_CLASS}"
    code = of_kind(units(text), BlockKind.CODE)

    assert len(code) == 1
    assert code[0].text == f"import ray\nray.init()\n\n{COUNTER_CLASS}"
    assert "\n    def __init__(self):\n        self.value = 0" in code[0].text  # indentation kept
    assert not code[0].quotable


def test_a_lone_import_line_is_code_not_a_label():
    found = units(TABBED_EXAMPLE)

    code = of_kind(found, BlockKind.CODE)
    assert len(code) == 1
    assert code[0].text == f"import ray\n\n{COUNTER_CLASS}"
    assert all(u.text != "import ray" for u in found if u.kind != BlockKind.CODE)


def test_class_methods_separated_by_a_blank_line_stay_one_block():
    text = (
        "@ray.remote\nclass Counter:\n    def __init__(self):\n        self.value = 0\n\n"
        "    def increment(self):\n        self.value += 1\n        return self.value"
    )
    code = units(text)

    assert kinds(code) == [BlockKind.CODE]
    assert code[0].text == text  # nothing re-indented or dropped


def test_an_indented_code_paragraph_loses_its_common_indentation_only():
    text = "Run the function remotely:\n\n    @ray.remote\n    def square(x):\n        return x * x"
    code = of_kind(units(text), BlockKind.CODE)

    assert [u.text for u in code] == ["@ray.remote\ndef square(x):\n    return x * x"]


def test_an_indented_code_block_in_two_paragraphs_keeps_its_relative_indentation():
    text = "    x = 1\n    y = 2\n\n    z = x + y\n    print(z)"
    code = units(text)

    assert kinds(code) == [BlockKind.CODE]
    assert code[0].text == "x = 1\ny = 2\n\nz = x + y\nprint(z)"


def test_an_introducing_sentence_followed_by_code_without_a_blank_line_is_split_from_it():
    text = "To start a Ray cluster locally, run the following command:\nray start --head --port=6379\nray status"
    found = units(text)

    assert kinds(found) == [BlockKind.PROSE, BlockKind.CODE]
    assert found[0].text == "To start a Ray cluster locally, run the following command:"
    assert found[1].text == "ray start --head --port=6379\nray status"


def test_a_paragraph_turning_from_prose_to_code_and_back_gives_three_blocks():
    text = (
        "Install Ray and its data libraries from PyPI:\n"
        "pip install -U ray\n"
        'pip install -U "ray[data]"\n'
        "Both commands need Python 3.9 or newer on the machine that runs them."
    )
    found = blocks(text)

    assert [kind for kind, _ in found] == [BlockKind.PROSE, BlockKind.CODE, BlockKind.PROSE]
    assert found[1][1] == ["pip install -U ray", 'pip install -U "ray[data]"']
    assert sum(len(lines) for _, lines in found) == len(text.split("\n")), "every line lands in one block"


def test_a_one_line_command_introduced_by_a_colon_is_code_even_between_prose_lines():
    text = "Start the head node with the following command:\nray start --head\nThen connect the worker nodes to it."
    found = units(text)

    assert [u.text for u in of_kind(found, BlockKind.CODE)] == ["ray start --head"]
    assert all("ray start --head" not in u.text for u in of_kind(found, BlockKind.PROSE))


def test_java_comment_lines_inside_code_are_code():
    text = (
        "Java\n\n"
        "// Create an actor.\n"
        "ActorHandle<Counter> counter = Ray.actor(Counter::new).remote();\n"
        "// Call the increment method on the actor handle now.\n"
        "counter.task(Counter::increment).remote();"
    )
    found = units(text)

    assert kinds(found) == [BlockKind.CODE]
    assert found[0].text.startswith("// Create an actor.\n")
    assert "// Call the increment method on the actor handle now." in found[0].text.split("\n")


@pytest.mark.parametrize(
    "comment, statement",
    [
        (
            "// Create an actor from the Counter class.",
            "ActorHandle<Counter> counter = Ray.actor(Counter::new).remote();",
        ),
        ("# Create an actor from the Counter class and call it.", "counter = Counter.remote()"),
    ],
)
def test_a_sentence_like_comment_opening_code_is_code(comment, statement):
    found = units(f"Create the actor from its class.\n\n{comment}\n{statement}")

    assert [u.text for u in of_kind(found, BlockKind.CODE)] == [f"{comment}\n{statement}"]
    assert all(not u.text.startswith(("//", "#")) for u in found if u.quotable)


@pytest.mark.parametrize(
    "line",
    [
        "import ray",
        "ray.init()",
        "pip install -U ray",
        "kubectl apply -f raycluster.yaml",
        "counter = Counter.remote()",
    ],
)
def test_statements_and_commands_are_code_lines(line):
    assert is_code_line(line)


def test_a_wrapped_sentence_naming_a_parameter_stays_prose():
    text = (
        "By default, Ray writes the logs of every worker to files in the session directory. Set\n"
        "log_to_file=True in the logging configuration to also write the driver's logs there, which\n"
        "helps when debugging jobs that run for a long time."
    )
    found = units(text)

    assert kinds(found) == [BlockKind.PROSE, BlockKind.PROSE]
    assert found[1].text == (
        "Set log_to_file=True in the logging configuration to also write the driver's logs there, "
        "which helps when debugging jobs that run for a long time."
    )
    assert not is_code_line(
        "log_to_file=True in the logging configuration to also write the driver's logs there, which"
    )


def test_a_chunk_starting_mid_sentence_opens_with_an_unquotable_fragment():
    found = units("are started. This setting controls how many workers Ray starts on each node of the cluster.")

    assert [u.text for u in found] == [
        "are started.",
        "This setting controls how many workers Ray starts on each node of the cluster.",
    ]
    assert not found[0].quotable
    assert found[1].quotable


# --- lists and tables --------------------------------------------------------------------


def test_a_list_keeps_an_unindented_continuation_line_in_its_item():
    text = (
        "Ray supports the following accelerators:\n"
        "- NVIDIA GPUs, with CUDA installed on\n"
        "every node of the cluster\n"
        "- AWS Trainium chips"
    )
    found = units(text)

    assert kinds(found) == [BlockKind.PROSE, BlockKind.LIST]
    assert found[1].text.split("\n") == [
        "- NVIDIA GPUs, with CUDA installed on",
        "every node of the cluster",
        "- AWS Trainium chips",
    ]
    assert found[1].quotable


def test_a_numbered_list_is_one_unit_followed_by_the_next_paragraph():
    text = "1. Install Ray with pip.\n2. Start the head node.\n3. Connect the workers.\n\nEach node reports its resources when it starts."
    found = units(text)

    assert kinds(found) == [BlockKind.LIST, BlockKind.PROSE]
    assert found[0].text.count("\n") == 2
    assert found[0].paragraph != found[1].paragraph


@pytest.mark.parametrize(
    "table",
    [
        "Name     Type     Default     Description\nnum_cpus     int     1     CPUs reserved for the task",
        "| Name | Type |\n| --- | --- |\n| num_cpus | int |",
        "num_gpus     float     0     GPUs reserved for the task",
    ],
)
def test_table_rows_are_skipped_and_never_quoted(table):
    text = (
        f"Tasks reserve one CPU unless told otherwise.\n\n{table}\n\nSet num_gpus to reserve accelerators for the task."
    )
    found = units(text)

    prose = ["Tasks reserve one CPU unless told otherwise.", "Set num_gpus to reserve accelerators for the task."]
    assert [u.text for u in found if u.kind == BlockKind.PROSE] == prose
    assert all(u.kind == BlockKind.SKIP and not u.quotable for u in found if u.text not in prose)
    assert all(kind == BlockKind.SKIP for kind, lines in blocks(table))


def test_a_yaml_config_with_a_sequence_is_one_code_block():
    config = "applications:\n  - name: app1\n    route_prefix: /\n    import_path: model:app"
    found = units(f"Ray Serve reads its applications from a config file.\n\n{config}")

    assert kinds(found) == [BlockKind.PROSE, BlockKind.CODE]
    assert found[1].text == config


# --- quotability and rendering ------------------------------------------------------------


def test_only_whole_sentences_and_lists_are_quotable():
    assert Unit(BlockKind.PROSE, "Ray Serve scales replicas automatically.", 0).quotable
    assert not Unit(BlockKind.PROSE, "Too short.", 0).quotable
    assert not Unit(BlockKind.PROSE, "and then the replicas are removed again.", 0).quotable
    assert Unit(BlockKind.LIST, "- a", 0).quotable
    assert not Unit(BlockKind.CODE, "ray start --head --port=6379 --num-cpus=8", 0).quotable
    assert not Unit(BlockKind.SKIP, "Getting started with Ray Serve today", 0).quotable


def test_render_fences_code_keeps_lists_and_runs_sentences_of_a_paragraph_on():
    text = (
        "Ray Serve deploys models. It scales them with traffic.\n\n"
        "Install it with pip:\n\n"
        'pip install -U "ray[serve]"\n\n'
        "- Deployments hold the model.\n- Replicas serve requests."
    )
    markdown = render(units(text))

    assert markdown.split("\n\n") == [
        "Ray Serve deploys models. It scales them with traffic.",
        "Install it with pip:",
        '```\npip install -U "ray[serve]"\n```',
        "- Deployments hold the model.\n- Replicas serve requests.",
    ]


def test_render_of_prose_gives_back_its_paragraphs_with_lines_rejoined():
    paragraphs = [
        "Ray Serve is a scalable model serving library.\nIt is framework agnostic. You can serve PyTorch models.",
        "Each deployment runs as a group of replicas. The autoscaler adds replicas as requests\ngrow.",
    ]
    assert render(units("\n\n".join(paragraphs))) == "\n\n".join(" ".join(p.split()) for p in paragraphs)


def test_render_keeps_the_indentation_of_a_code_block_inside_its_fence():
    code = units(COUNTER_CLASS)
    assert render(code) == f"```\n{COUNTER_CLASS}\n```"


def test_blank_and_empty_text_have_no_units():
    assert units("") == []
    assert units("\n\n   \n") == []
    assert render([]) == ""
