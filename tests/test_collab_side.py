"""Side features for the dot product (data.side_features, model.side_reg): what the readers take from
each MovieLens set, how the tables enter the prediction and the loss, that a checkpoint carries them,
and that bad side files fail in one line."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from emblab.core.errors import ConfigError, DataError
from emblab.data.interactions import InteractionsDataModule
from emblab.data.movielens import read_item_features, read_users, side_tables
from emblab.interpret import ItemTable
from emblab.models.collab import CollabModel
from emblab.predict import load_recommender
from emblab.training.build import build
from emblab.training.loading import load_model

from conftest import FAST, compose_cfg, shared_path


@pytest.fixture(scope="module")
def embedded_side():
    dm = InteractionsDataModule.of(source="embedded", side_features=True)
    dm.setup()
    return dm


def test_embedded_side_tables(embedded_side):
    dims = embedded_side.dims()
    # 2 genders + 7 age bands + 21 occupations, and code 0 for a user the file lacks
    assert dims["n_user_fields"] == 3 and dims["n_user_codes"] == 1 + 2 + 7 + 21
    codes, feats = embedded_side.side["user_codes"], embedded_side.side["item_feats"]
    assert codes.shape == (943, 3) and (codes > 0).all()  # every user has all three
    assert feats.shape == (1682, dims["n_item_feats"])
    toy = embedded_side.titles.index("Toy Story (1995)")
    genres, decades = feats[toy, :-8], feats[toy, -8:]  # Animation, Children's, Comedy; the 1990s
    assert sorted(genres[genres > 0].tolist()) == pytest.approx([1 / 3] * 3) and decades.tolist() == [0] * 7 + [1]


def test_grouplens_side_files_read_like_the_embedded_ones(embedded_side):
    root = shared_path("movielens", "ml-100k")
    users = read_users(root / "u.user", "ml-100k")
    assert len(users) == 943 and users.loc[0].tolist() == [1, "M", "age band 1", "technician"]  # 24 years: 18-24
    ids, genres, year = read_item_features(root / "u.item", "ml-100k")
    assert len(ids) == 1682 and len(genres[0]) == 3 and year[0] == 1995
    dm = InteractionsDataModule.of(source="ml-100k", root=str(root), split="u1", download=False, side_features=True)
    dm.setup()
    assert dm.dims() == embedded_side.dims()
    assert torch.equal(dm.side["user_codes"], embedded_side.side["user_codes"])


def test_movies_csv_gives_genres_and_decades_and_no_user_codes(tmp_path):
    path = tmp_path / "movies.csv"
    path.write_text(
        'movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n2,"Heat, The (1964)",Drama\n'
        "3,Untitled,(no genres listed)\n"
    )
    ids, genres, year = read_item_features(path, "ml-latest-small")
    assert ids.tolist() == [1, 2, 3] and genres[2] == [] and year[1] == 1964 and year[2] != year[2]
    side = side_tables(torch.tensor([5]).numpy(), ids[[0, 1, 2]], None, (ids, genres, year))
    assert "user_codes" not in side
    assert side["item_feats"].tolist() == [[0.5, 0.5, 0, 0, 1], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]]
    assert side["missing"] == {"items without genres": 1, "items without a release year": 1}  # counted, not hidden


@pytest.mark.parametrize(
    "text, says",
    [
        ("1|24|M|technician|85711\nx|53|F|other|94043\n", "line 2, column '0': 'x' is not an integer user id"),
        ("1|24|M|technician|85711\n2|old|F|other|94043\n", "line 2, column '1': 'old' is not an age in years"),
        ("1|24||technician|85711\n", "line 1, column '2': '' is not a gender"),
    ],
)
def test_a_bad_user_file_names_line_and_column(tmp_path, text, says):
    path = tmp_path / "u.user"
    path.write_text(text)
    with pytest.raises(DataError, match=says):
        read_users(path, "ml-100k")


def test_side_tables_enter_the_prediction_and_a_fixed_prior():
    torch.manual_seed(0)
    m = CollabModel.of(
        n_users=4, n_items=3, n_factors=2, reg=0.0, n_user_codes=5, n_user_fields=2, n_item_feats=2, side_reg=10.0
    )
    m.net.user_codes.copy_(torch.tensor([[1, 3], [2, 3], [1, 4], [0, 0]]))
    m.net.item_feats.copy_(torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]]))
    users, items, ratings = torch.tensor([0, 1, 3]), torch.tensor([1, 0, 2]), torch.tensor([4.0, 2.0, 3.0])
    net = m.net
    u = net.u_weight(users) + net.uc_weight(net.user_codes[users]).sum(1)
    i = net.i_weight(items) + net.item_feats[items] @ net.if_weight.weight
    bias = (
        net.u_bias(users)
        + net.uc_bias(net.user_codes[users]).sum(1)
        + net.i_bias(items)
        + net.item_feats[items] @ net.if_bias.weight
    ).squeeze(1)
    expected = torch.sigmoid((u * i).sum(1) + bias) * 5.5
    assert torch.allclose(m(users, items), expected)
    m.n_train = 50
    prior = 10.0 / 50 * sum(t.weight.pow(2).sum() for t in (net.uc_weight, net.uc_bias, net.if_weight, net.if_bias))
    assert float(m.train_loss((users, items, ratings))) == pytest.approx(float(F.mse_loss(expected, ratings) + prior))


def test_side_features_need_the_dot_product():
    with pytest.raises(ConfigError, match="needs model.arch=dot"):
        CollabModel.of(n_users=4, n_items=3, arch="nn", n_item_feats=2)


def test_fit_fills_the_tables_and_the_checkpoint_predicts_alone(tmp_path):
    cfg = compose_cfg(["experiment=collab_ml100k_side", *FAST, "~callbacks.progress_bar"], tmp_path)
    trainer, dm, model, _ = build(cfg)
    trainer.fit(model, datamodule=dm)
    assert torch.equal(model.net.item_feats, dm.side["item_feats"])
    assert torch.equal(model.net.user_codes, dm.side["user_codes"])
    assert model.n_train == len(dm.train_ds)
    path = tmp_path / "side.ckpt"
    trainer.save_checkpoint(path)
    loaded, _ = load_model(path)  # weights_only: the tables are plain tensors
    assert torch.equal(loaded.net.item_feats, dm.side["item_feats"])
    users, items, _ = dm.val_ds.tensors
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(users[:100], items[:100]), model(users[:100], items[:100]))
    rec = load_recommender(path)
    assert len(rec.recommend(int(dm.user_ids[0]), k=3)) == 3
    # interpretation ranks the whole bias of an item, its genres' and decade's shares included
    table = ItemTable.from_model(loaded, rec.a)
    with torch.no_grad():
        full = loaded.net.i_bias.weight[:, 0] + loaded.net.item_feats @ loaded.net.if_bias.weight[:, 0]
    assert torch.allclose(torch.from_numpy(table.bias), full)


def test_a_model_with_side_tables_refuses_data_without_them(tmp_path):
    cfg = compose_cfg(["experiment=collab_ml100k", *FAST, "~callbacks.progress_bar"], tmp_path)
    trainer, dm, _, s = build(cfg)
    model = CollabModel.of(**{**dm.dims(), "n_item_feats": 27})  # sized for side tables this data lacks
    with pytest.raises(ConfigError, match="set data.side_features=true"):
        trainer.fit(model, datamodule=dm)
    with pytest.raises(ConfigError, match="model.n_item_feats: no such setting"):  # a size is the data's to give
        build(compose_cfg(["experiment=collab_ml100k", *FAST, "+model.n_item_feats=27"], tmp_path))
