"""The executable model on its own: pure, no layer, no event loop."""

import pytest

from asgi_conformance.model import FULL, OK, LayerModel, ModelMismatch, PossibleStates, non_local_part


def msg(n):
    return {"type": "test", "n": n}


# --- one exact state ------------------------------------------------------------------------

def test_channels_are_fifo_and_receive_on_empty_says_none():
    model = LayerModel()
    for n in range(3):
        assert model.send("a", msg(n)) == OK
    assert [model.receive("a") for _ in range(4)] == [msg(0), msg(1), msg(2), None]
    assert model.queues == {}


def test_capacity_refuses_the_next_send_and_a_receive_makes_room():
    model = LayerModel(capacity=2)
    assert [model.send("a", msg(n)) for n in range(3)] == [OK, OK, FULL]
    assert model.queues["a"] == [msg(0), msg(1)]  # the refused message left no trace
    assert model.send("b", msg(9)) == OK  # capacity is per channel
    model.receive("a")
    assert model.send("a", msg(3)) == OK
    assert model.queues["a"] == [msg(1), msg(3)]


def test_no_capacity_means_no_limit():
    model = LayerModel(capacity=None)
    assert all(model.send("a", msg(n)) == OK for n in range(1000))


def test_process_specific_channels_share_the_room_of_their_non_local_part():
    model = LayerModel(capacity=3)
    assert non_local_part("p.x!a") == "p.x!" and non_local_part("plain") == "plain"
    assert [model.send("p.x!a", msg(n)) for n in range(2)] == [OK, OK]
    assert model.send("p.x!b", msg(2)) == OK
    assert model.send("p.x!b", msg(3)) == FULL
    assert model.send("p.y!a", msg(4)) == OK  # another process has its own room
    assert model.receive("p.x!a") == msg(0)
    assert model.send("p.x!b", msg(5)) == OK
    assert model.queues["p.x!b"] == [msg(2), msg(5)]


def test_group_add_is_idempotent_and_discard_of_a_non_member_is_a_no_op():
    model = LayerModel()
    model.group_add("g", "a")
    model.group_add("g", "a")
    model.group_discard("g", "b")
    model.group_discard("nobody", "a")
    [after] = model.group_send_outcomes("g", msg(1))
    assert after.queues == {"a": [msg(1)]}
    model.group_discard("g", "a")
    assert model.groups == {}
    assert model.group_send_outcomes("g", msg(2)) == [model]


def test_group_send_skips_full_members_and_reaches_the_others():
    model = LayerModel(capacity=1)
    model.send("a", msg(0))
    for channel in ("a", "b", "c"):
        model.group_add("g", channel)
    [after] = model.group_send_outcomes("g", msg(1))
    assert after.queues == {"a": [msg(0)], "b": [msg(1)], "c": [msg(1)]}
    assert model.queues == {"a": [msg(0)]}  # outcomes are new states; the old one is unchanged


def test_siblings_with_too_little_shared_room_give_one_outcome_per_choice():
    model = LayerModel(capacity=3)
    model.send("p!a", msg(0))
    model.send("p!a", msg(1))
    model.group_add("g", "p!a")
    model.group_add("g", "p!b")
    outcomes = model.group_send_outcomes("g", msg(2))
    assert sorted(sorted(o.queues.items()) for o in outcomes) == sorted([
        sorted({"p!a": [msg(0), msg(1), msg(2)]}.items()),
        sorted({"p!a": [msg(0), msg(1)], "p!b": [msg(2)]}.items()),
    ])


def test_flush_empties_channels_and_groups():
    model = LayerModel()
    model.send("a", msg(0))
    model.group_add("g", "a")
    model.flush()
    assert model.receive("a") is None
    assert model.group_send_outcomes("g", msg(1))[0].queues == {}


# --- the set of states the spec allows ----------------------------------------------------

def test_answers_the_model_predicts_are_accepted():
    states = PossibleStates(capacity=1)
    assert states.send_outcomes("a") == {OK}
    states.send("a", msg(0), OK)
    assert states.send_outcomes("a") == {FULL}
    states.send("a", msg(1), FULL)
    assert states.heads("a") == [msg(0)]
    states.received("a", msg(0))
    assert states.heads("a") == [None]
    states.received("a", None)


@pytest.mark.parametrize("answer", [OK, FULL])
def test_a_send_answer_the_model_forbids_is_a_mismatch(answer):
    states = PossibleStates(capacity=1)
    if answer == FULL:
        with pytest.raises(ModelMismatch, match="answered full, expected ok"):
            states.send("a", msg(0), FULL)
    else:
        states.send("a", msg(0), OK)
        with pytest.raises(ModelMismatch, match="answered ok, expected full"):
            states.send("a", msg(1), OK)


def test_a_wrong_or_missing_or_extra_message_is_a_mismatch():
    states = PossibleStates()
    states.send("a", msg(0), OK)
    states.send("a", msg(1), OK)
    with pytest.raises(ModelMismatch, match=r"got \{'type': 'test', 'n': 1\}, expected \{'type': 'test', 'n': 0\}"):
        states.received("a", msg(1))
    with pytest.raises(ModelMismatch, match="got nothing"):
        states.received("a", None)
    with pytest.raises(ModelMismatch, match="expected nothing"):
        states.received("b", msg(0))
    states.received("a", msg(0))  # a mismatch left the states as they were


def test_an_open_choice_is_kept_until_the_layer_reveals_it():
    states = PossibleStates(capacity=2)
    states.send("p!a", msg(0), OK)
    states.group_add("g", "p!a")
    states.group_add("g", "p!b")
    states.group_send("g", msg(1))
    assert len(states.states) == 2
    assert states.heads("p!b") == [None, msg(1)] or states.heads("p!b") == [msg(1), None]
    states.received("p!b", msg(1))  # the layer chose p!b
    assert len(states.states) == 1
    assert states.heads("p!a") == [msg(0)]
    states.received("p!a", msg(0))
    with pytest.raises(ModelMismatch):
        states.received("p!a", msg(1))  # p!b got the copy, so p!a cannot have it too


def test_both_siblings_getting_a_copy_without_room_for_both_is_a_mismatch():
    states = PossibleStates(capacity=2)
    states.send("p!a", msg(0), OK)
    states.group_add("g", "p!a")
    states.group_add("g", "p!b")
    states.group_send("g", msg(1))
    states.received("p!b", msg(1))
    states.received("p!a", msg(0))
    with pytest.raises(ModelMismatch):
        states.received("p!a", msg(1))


def test_states_that_become_identical_are_merged():
    states = PossibleStates(capacity=1)
    states.group_add("g", "p!a")
    states.group_add("g", "p!b")
    states.group_send("g", msg(1))  # room for one copy: p!a's or p!b's
    assert len(states.states) == 2
    states.flush()
    states.send("n", msg(2), OK)  # the two flushed states are now one
    assert len(states.states) == 1
