import pytest
import torch

from trainattn.core.inner import FunctionalAdamW, FunctionalSGD, inner_update, safe_sqrt


def _params():
    g = torch.Generator().manual_seed(1)
    return {"a": torch.randn(4, 3, generator=g, dtype=torch.float64),
            "b": torch.randn(5, generator=g, dtype=torch.float64)}


def _grad_sequence(steps=5):
    g = torch.Generator().manual_seed(2)
    seq = []
    for _i in range(steps):
        grads = {"a": torch.randn(4, 3, generator=g, dtype=torch.float64),
                 "b": torch.randn(5, generator=g, dtype=torch.float64)}
        grads["a"][0, 0] = 0.0  # an exactly-zero gradient entry (v stays 0 there)
        seq.append(grads)
    return seq


@pytest.mark.parametrize(
    "functional,reference",
    [
        (FunctionalAdamW(lr=1e-2, weight_decay=0.05), lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.05)),
        (FunctionalSGD(lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
        (FunctionalSGD(lr=0.1, momentum=0.9, weight_decay=0.01),
         lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
    ],
)
def test_functional_optimizers_equal_torch_optim_over_5_steps(functional, reference):
    params = _params()
    torch_params = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    opt = reference(list(torch_params.values()))
    state = functional.init(params)
    for grads in _grad_sequence(5):
        params, state = functional.step(params, grads, state)
        for n, p in torch_params.items():
            p.grad = grads[n].clone()
        opt.step()
    for n in params:
        torch.testing.assert_close(params[n], torch_params[n].detach(), rtol=1e-12, atol=1e-14)


def test_safe_sqrt_is_exact_and_has_finite_gradient_at_zero():
    x = torch.tensor([0.0, 4.0, 1e-30], dtype=torch.float64, requires_grad=True)
    y = safe_sqrt(x)
    torch.testing.assert_close(y.detach(), torch.sqrt(x.detach()))
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(g).all() and g[0] == 0 and g[1] == pytest.approx(0.25)


def test_adamw_meta_gradient_is_finite_with_zero_gradient_entries():
    w = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    params = {"p": torch.tensor([1.0, 2.0], dtype=torch.float64)}

    def loss_fn(p, tracked):
        scale = w if tracked else w.detach()
        return scale * (p["p"][0] ** 2)  # gradient w.r.t. p[1] is exactly 0

    out = inner_update(loss_fn, params, FunctionalAdamW(lr=0.1), untracked_steps=1, tracked_steps=1)
    (g,) = torch.autograd.grad(out.params["p"].sum(), w)
    assert torch.isfinite(g)


def test_untracked_steps_pass_no_gradient_and_tracked_steps_do():
    w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    params = {"p": torch.tensor([1.0, -1.0], dtype=torch.float64)}

    def loss_fn(p, tracked):
        return w * (p["p"] ** 2).sum()  # deliberately NOT detaching w

    only_untracked = inner_update(loss_fn, params, FunctionalSGD(lr=0.1), untracked_steps=3, tracked_steps=0)
    assert not only_untracked.params["p"].requires_grad
    tracked = inner_update(loss_fn, params, FunctionalSGD(lr=0.1), untracked_steps=0, tracked_steps=1)
    (g,) = torch.autograd.grad(tracked.params["p"].sum(), w)
    # p' = p - 0.1 * 2 w p  ->  d(sum p')/dw = -0.2 * sum(p) = 0
    # use a non-symmetric check: d(p'_0)/dw = -0.2 * p_0 = -0.2
    (g0,) = torch.autograd.grad(
        inner_update(loss_fn, params, FunctionalSGD(lr=0.1), 0, 1).params["p"][0], w
    )
    assert g.item() == pytest.approx(0.0) and g0.item() == pytest.approx(-0.2)
    assert params["p"].tolist() == [1.0, -1.0]  # inputs untouched


def test_inner_update_equals_a_hand_unrolled_sgd():
    params = {"p": torch.tensor([3.0], dtype=torch.float64)}

    def loss_fn(p, tracked):
        return (p["p"] ** 2).sum()

    out = inner_update(loss_fn, params, FunctionalSGD(lr=0.25), untracked_steps=2, tracked_steps=1)
    # p <- p - 0.25 * 2p = 0.5 p, three times
    assert out.params["p"].item() == pytest.approx(3.0 * 0.5**3)
    assert out.losses == pytest.approx([9.0, 2.25, 0.5625])
