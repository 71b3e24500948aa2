"""Tasks read out of teacher replies of every shape: numbered, labelled, bulleted, broken."""

from __future__ import annotations

from openclone.distill import Reason, Task, parse_tasks


def _instructions(text: str, truncated: bool = False) -> list[str]:
    return [t.instruction for t in parse_tasks(text, truncated).tasks]


def test_task_headers_with_fields_preamble_and_sign_off() -> None:
    reply = """Sure! Here are 4 new tasks:

Task 3
Instruction: Summarise the e-mail below in one sentence.
Input: Hi team, the launch moves to Friday because QA found two blockers.

Task 4: Explain recursion to a ten-year-old.
Input: <none>

**Task 5:** Sort these items alphabetically.
Input:
1. banana
2. apple

### Task 6
Instruction: Write a SQL query that counts orders per customer.
Input: Table orders(id, customer_id, total)

I hope these help!"""
    parsed = parse_tasks(reply)
    assert not parsed.dropped
    assert parsed.tasks == [
        Task(
            "Summarise the e-mail below in one sentence.",
            "Hi team, the launch moves to Friday because QA found two blockers.",
        ),
        Task("Explain recursion to a ten-year-old."),
        # A numbered list inside an input does not split the task.
        Task("Sort these items alphabetically.", "1. banana\n2. apple"),
        Task(
            "Write a SQL query that counts orders per customer.",
            "Table orders(id, customer_id, total)",
        ),
    ]


def test_alpaca_numbered_fields_and_separators() -> None:
    reply = """1. Instruction: Give three synonyms for happy.
1. Input: <noinput>
1. Output: glad, cheerful, joyful
###
2. Instruction: Translate the greeting to German.
2. Input: Good morning
###
3. Instruction: Write a poem about"""
    parsed = parse_tasks(reply, truncated=True)
    assert parsed.tasks == [
        Task("Give three synonyms for happy.", "", "glad, cheerful, joyful"),
        Task("Translate the greeting to German.", "Good morning"),
    ]
    assert parsed.dropped == {Reason.TRUNCATED: 1}  # the last item was cut off


def test_numbered_lists_in_both_styles() -> None:
    reply = "1. Name three rivers in Africa.\n2) List two uses of vinegar at home.\n3. **Plan a picnic for six people.**"
    assert _instructions(reply) == [
        "Name three rivers in Africa.",
        "List two uses of vinegar at home.",
        "Plan a picnic for six people.",
    ]


def test_markdown_bullets_and_plain_lines() -> None:
    bullets = "Here you go:\n- Write a limerick about a sleepy owl.\n* Explain how tides work.\n• Suggest a name for a bakery."
    assert _instructions(bullets) == [
        "Write a limerick about a sleepy owl.",
        "Explain how tides work.",
        "Suggest a name for a bakery.",
    ]
    lines = "Here are some new tasks:\nPlan a three-day trip to Lisbon.\nInput: budget 300 euros\nConvert 72 F to Celsius."
    assert parse_tasks(lines).tasks == [
        Task("Plan a three-day trip to Lisbon.", "budget 300 euros"),
        Task("Convert 72 F to Celsius."),
    ]


def test_a_refusal_is_one_drop_however_long() -> None:
    parsed = parse_tasks("I'm sorry, but I can't help with that.\nPlease ask something else.")
    assert parsed.tasks == [] and parsed.dropped == {Reason.REFUSAL: 1}
    parsed = parse_tasks("As an AI language model, I cannot create tasks.")
    assert parsed.dropped == {Reason.REFUSAL: 1}


def test_empty_and_contentless_replies_are_unparsable() -> None:
    assert parse_tasks("").dropped == {Reason.UNPARSABLE: 1}
    assert parse_tasks("   \n\n").dropped == {Reason.UNPARSABLE: 1}
    parsed = parse_tasks("Task 1:\nInput: something\nTask 2: Describe a sunrise over the sea.")
    assert _instructions("Task 1: **\nTask 2: Describe a sunrise over the sea.") == [
        "Describe a sunrise over the sea."
    ]
    assert parsed.tasks == [Task("Describe a sunrise over the sea.")]
    assert parsed.dropped == {Reason.UNPARSABLE: 1}  # Task 1 had an input but no instruction


def test_quotes_markdown_and_placeholder_inputs_are_cleaned() -> None:
    reply = 'Task 1: "Rewrite this sentence politely."\nInput: N/A\n\nTask 2: __Name a colour.__\nInput: (none)'
    assert parse_tasks(reply).tasks == [
        Task("Rewrite this sentence politely."),
        Task("Name a colour."),
    ]


def test_a_truncated_reply_without_items_counts_as_truncated() -> None:
    parsed = parse_tasks("Write a story about a dragon who", truncated=True)
    assert parsed.tasks == [] and parsed.dropped == {Reason.TRUNCATED: 1}
