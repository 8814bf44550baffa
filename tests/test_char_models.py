"""Character models: every config trains (fast_dev_run on its own data), the lesson's sequence NLL,
identity init, stateful hidden state, overfitting a tiny batch, and the vocab through a checkpoint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from emblab.core.errors import ConfigError
from emblab.models.char import CharModel, CharStateful, nll_loss_seq
from emblab.train import train
from emblab.training.loading import load_model

from conftest import FAST, compose_cfg, model_names

CHAR_MODELS = [m for m in model_names() if m.startswith("char")]
CORPUS = "I am Sam. Sam I am. That Sam-I-am! That Sam-I-am! I do not like that Sam-I-am!\n" * 40


def model(arch="char_rnn", shape="windows", vocab_size=20, **kw) -> CharModel:
    torch.manual_seed(0)
    return CharModel.of(vocab_size=vocab_size, arch=arch, data_shape=shape, n_fac=6, n_hidden=16, samples=0, **kw)


@pytest.mark.parametrize("name", CHAR_MODELS)
def test_fast_dev_run(name, tmp_path):
    metrics = train(compose_cfg([f"model={name}", *FAST], tmp_path))
    # one Lightning batch (steps_per_call optimizer steps) from a start near uniform over 81 characters
    assert 3.0 < metrics["val/loss"]["final"] < torch.log(torch.tensor(81.0)).item() + 0.3


def test_every_lesson_model_has_a_config():
    assert {"char3", "char_loop", "char_loop_concat", "char_rnn", "char_seq_rnn", "char_gru", "char_lstm"} <= set(
        CHAR_MODELS
    )


@pytest.mark.parametrize(
    "arch,shape,cs,out",
    [
        ("char3", "blocks", 3, (5, 20)),
        ("char_loop", "windows", 8, (5, 20)),
        ("char_loop_concat", "windows", 8, (5, 20)),
        ("char_rnn", "windows", 8, (5, 20)),
        ("char_seq_rnn", "sequences", 8, (8, 5, 20)),
    ],
)
def test_output_shapes_are_log_probabilities(arch, shape, cs, out):
    m = model(arch, shape, cs=cs)
    logp = m.net(torch.randint(1, 20, (5, cs)))
    assert logp.shape == out
    assert torch.allclose(logp.exp().sum(-1), torch.ones(out[:-1]), atol=1e-5)


def test_sequence_nll_equals_cross_entropy_on_flattened_logits():
    torch.manual_seed(0)
    logits = torch.randn(8, 5, 20)  # (T, B, V), the model's seq-first layout
    targ = torch.randint(0, 20, (5, 8))  # (B, T), the data's batch-first layout
    ours = nll_loss_seq(F.log_softmax(logits, -1), targ)
    ref = F.cross_entropy(logits.transpose(0, 1).reshape(-1, 20), targ.reshape(-1))
    assert torch.allclose(ours, ref)


@pytest.mark.parametrize(
    "arch,shape,extra",
    [("char_rnn", "windows", {}), ("char_seq_rnn", "sequences", {}), ("stateful", "stream", {"cell": "rnn"})],
)
def test_identity_init_is_the_identity(arch, shape, extra):
    m = model(arch, shape, identity_init=True, **extra)
    assert torch.equal(m.net.rnn.weight_hh_l0, torch.eye(16))
    default = model(arch, shape, **extra)
    assert not torch.equal(default.net.rnn.weight_hh_l0, torch.eye(16))


def test_identity_init_needs_an_rnn():
    with pytest.raises(ConfigError, match="identity_init=true needs an nn.RNN"):
        model("stateful", "stream", cell="lstm", identity_init=True)
    with pytest.raises(ConfigError, match="trains on data.shape=sequences"):
        model("char_seq_rnn", "windows")


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_stateful_state_carries_over_and_is_detached(cell):
    """Two batches with the carried state give what one pass over both gives; the stored state has
    no graph; a new epoch and each validation start from zero."""
    m = model("stateful", "stream", cell=cell, n_layers=2)
    m.eval()  # no dropout, so the two computations must agree exactly
    x = torch.randint(1, 20, (3, 10))
    y = torch.randint(1, 20, (3, 10))
    whole, _ = m.net(x, m.net.init_hidden(3))  # (10, 3, V)
    m.train_loss((x[:, :6], y[:, :6]))
    h = m.hidden["train"]
    assert not any(t.requires_grad for t in (h if isinstance(h, tuple) else (h,)))
    second, _ = m.net(x[:, 6:], h)
    assert torch.allclose(second, whole[6:], atol=1e-6)
    m._forward(x[:, :6], "val")
    m.on_validation_epoch_start()
    assert "val" not in m.hidden and "train" in m.hidden  # validation never touches training state
    m.on_train_epoch_start()
    assert m.hidden == {}


@pytest.mark.parametrize("arch,shape,extra", [("char_rnn", "windows", {}), ("stateful", "stream", {"cell": "lstm"})])
def test_overfits_a_tiny_batch(arch, shape, extra):
    m = model(arch, shape, **extra)
    torch.manual_seed(1)
    x = torch.randint(1, 20, (8, 8))
    y = torch.randint(1, 20, (8,) if shape == "windows" else (8, 8))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        m.hidden.clear()  # the same batch each time: start it from zero state
        loss = m.train_loss((x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.5 and losses[-1] < 0.2 * losses[0], losses[::25]


def test_vocab_travels_with_the_checkpoint(tmp_path):
    corpus = tmp_path / "sam.txt"
    corpus.write_text(CORPUS)
    cfg = compose_cfg(
        [
            "model=char_rnn",
            "data=text",
            f"data.path={corpus}",
            "logger=csv",
            "debug=limit",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "model.samples=1",
            "model.sample_len=20",
        ],
        tmp_path,
    )
    metrics = train(cfg)
    m, ckpt = load_model(metrics["last_checkpoint"])
    meta = ckpt["emblab"]
    assert meta["data_kind"] == "text"
    assert meta["data"]["itos"] == ["\0", *sorted(set(CORPUS))]
    assert m.hparams.vocab_size == len(meta["data"]["itos"]) and m.hparams.cs == 8


def test_samples_each_validation_epoch_go_to_console_and_wandb_table(tmp_path, caplog):
    from types import SimpleNamespace

    from emblab.data.text import TextDataModule

    corpus = tmp_path / "sam.txt"
    corpus.write_text(CORPUS)
    dm = TextDataModule.of(source="text", path=str(corpus), shape="windows")
    dm.setup()

    class TableLogger:  # what the hook needs of WandbLogger
        rows = []

        def log_text(self, key, columns, data):
            self.rows.append((key, columns, data))

    from emblab.training.reports import TextSamples

    m = CharModel.of(
        vocab_size=len(dm.itos), arch="char_rnn", data_shape="windows", n_fac=6, n_hidden=16, samples=3, sample_len=25
    )
    trainer = SimpleNamespace(
        sanity_checking=False, is_global_zero=True, datamodule=dm, loggers=[TableLogger()], current_epoch=4
    )
    with caplog.at_level("INFO", logger="emblab"):
        TextSamples().on_validation_epoch_end(trainer, m)
    [(key, columns, data)] = TableLogger.rows
    assert key == "samples" and columns == ["epoch", "prompt", "text"] and len(data) == 3
    assert all(epoch == 4 and text.startswith(prompt) and len(text) == len(prompt) + 25 for epoch, prompt, text in data)
    assert sum("sample (epoch 4)" in r.getMessage() for r in caplog.records) == 3


def test_compile_option_trains_and_checkpoints_plain_weights(tmp_path):
    from emblab.train import train

    cfg = compose_cfg(
        [
            "model=char_rnn",
            "model.compile=true",
            "model.n_hidden=16",
            "debug=limit",
            "~callbacks.progress_bar",
            "logger=csv",
        ],
        tmp_path,
    )
    metrics = train(cfg)
    assert metrics["val/loss"]["final"] > 0
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state and not any("_orig_mod" in k for k in state), list(state)[:5]


def test_emb_drop_drops_embeddings_in_training_only():
    torch.manual_seed(0)
    net = CharStateful(20, 6, 16, "lstm", n_layers=1, emb_drop=0.5)
    x, h = torch.randint(1, 20, (3, 5)), net.init_hidden(3)
    seen = []
    net.e.register_forward_hook(lambda mod, inp, out: seen.append(out))
    net.rnn.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    net.train()
    net(x, h)
    emb, into_rnn = seen
    zeroed = into_rnn == 0
    assert zeroed.any() and torch.allclose(into_rnn[~zeroed], 2 * emb[~zeroed])  # dropped, the rest scaled by 1/(1-p)
    seen.clear()
    net.eval()
    net(x, h)
    assert torch.equal(seen[0], seen[1])


def test_out_drop_defaults_to_dropout_and_can_be_set_apart():
    assert CharStateful(20, 6, 16, "lstm", n_layers=2, dropout=0.5).drop.p == 0.5
    net = CharStateful(20, 6, 16, "lstm", n_layers=2, dropout=0.5, out_drop=0.0)
    assert net.drop.p == 0.0 and net.rnn.dropout == 0.5
    net.train()
    outs = []
    net.l_out.register_forward_pre_hook(lambda mod, args: outs.append(args[0]))
    net(torch.randint(1, 20, (3, 5)), net.init_hidden(3))
    assert (outs[0] != 0).all()  # nothing dropped before the output layer


def test_weight_drop_drops_hidden_to_hidden_weights_in_training_only():
    torch.manual_seed(0)
    net = CharStateful(20, 6, 16, "lstm", n_layers=2, weight_drop=0.5)
    plain = CharStateful(20, 6, 16, "lstm", n_layers=2)
    plain.load_state_dict(net.state_dict())
    x, h = torch.randint(1, 20, (3, 5)), net.init_hidden(3)
    net.eval(), plain.eval()
    assert torch.equal(net(x, h)[0], plain(x, h)[0])  # eval: the weights as they are
    net.train(), plain.train()
    out, _ = net(x, h)
    assert not torch.allclose(out, plain(x, h)[0])  # training: connections dropped
    out.sum().backward()
    w = net.rnn.weight_hh_l1
    assert (w != 0).all() and w.grad is not None and w.grad.abs().sum() > 0  # the weights stay; gradients reach them
    assert (w.grad == 0).float().mean() > 0.3  # dropped connections get no gradient (p = 0.5)
