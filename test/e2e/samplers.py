"""Few-step samplers as numpy loops around a denoiser callable: the reference
the compiled `generate` entries (hasten-compile --sampler) are checked
against, written from the papers' formulas step by step rather than from
the compiler's per-step coefficients.

`denoise(x, t, cond)` returns the model's prediction for a batch; `t` is the
step's timestep as a Python number (the caller turns it into the model's
time input). Everything is computed in float64 and returned as float32.
"""
import numpy as np

SIGMA_DATA, TIMESTEP_SCALING = 0.5, 10.0


def alphas_cumprod(schedule="scaled-linear", start=None, end=None, train_steps=1000):
    """The cumulative products of 1 - beta of a training schedule."""
    if schedule == "linear":
        betas = np.linspace(start or 1e-4, end or 0.02, train_steps, dtype=np.float64)
    else:
        betas = np.linspace((start or 0.00085) ** 0.5, (end or 0.012) ** 0.5, train_steps,
                            dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def ddim_timesteps(steps, train_steps=1000):
    """Trailing spacing: the last training step first."""
    return [int(t) for t in np.round(np.arange(train_steps, 0, -train_steps / steps)) - 1]


def lcm_timesteps(steps, train_steps=1000, origin_steps=50):
    """LCM's schedule: every (50 // steps)-th of 50 evenly spaced timesteps."""
    origin = np.arange(1, origin_steps + 1) * (train_steps // origin_steps) - 1
    return [int(t) for t in origin[::-1][::origin_steps // steps][:steps]]


def _split(prediction_type, x, pred, alpha):
    """(clean estimate, noise estimate) from a prediction at cumulative alpha."""
    sa, sb = np.sqrt(alpha), np.sqrt(1.0 - alpha)
    if prediction_type == "eps":
        return (x - sb * pred) / sa, pred
    if prediction_type == "v":
        return sa * x - sb * pred, sb * x + sa * pred
    x0 = pred
    return x0, (x - sa * x0) / sb if sb > 0 else np.zeros_like(x)


def run(denoise, noise, cond, rule, timesteps=None, steps=None, prediction="eps",
        cfg="none", scale=1.0, negative=None, renoise=None, alphas=None):
    """The sampler loop. `cond` and `negative` are lists of conditioning
    arrays (in the denoiser's order); `renoise` is [steps - 1, *sample]."""
    x = noise.astype(np.float64)
    batch = x.shape[0]

    def predict(x, t, residual):
        """(guided prediction, the conditional one); `residual` stands for
        the negative pass under residual CFG."""
        if cfg == "full":
            both = denoise(np.concatenate([x, x]), t,
                           [np.concatenate([c, n]) for c, n in zip(cond, negative)])
            c, u = both[:batch], both[batch:]
        else:
            c = denoise(x, t, cond)
            u = residual
        if cfg == "none":
            return c
        return u + scale * (c - u)

    if rule == "euler-flow":
        times = [i / steps for i in range(steps + 1)]
        for i in range(steps):
            v = predict(x, times[i], None)
            x = x + (times[i + 1] - times[i]) * v
        return x.astype(np.float32)

    alphas = alphas if alphas is not None else alphas_cumprod()
    residual = None
    if cfg == "rcfg-self":
        residual = x.copy()
    elif cfg == "rcfg-onetime":
        residual = denoise(x, timesteps[0], negative)
    for i, t in enumerate(timesteps):
        a = alphas[t]
        a_next = alphas[timesteps[i + 1]] if i + 1 < len(timesteps) else 1.0
        pred = predict(x, t, residual)
        x0, eps = _split(prediction, x, pred, a)
        if rule == "ddim":
            x_next = np.sqrt(a_next) * x0 + np.sqrt(1 - a_next) * eps
        else:
            scaled = t * TIMESTEP_SCALING
            c_skip = SIGMA_DATA ** 2 / (scaled ** 2 + SIGMA_DATA ** 2)
            c_out = scaled / np.sqrt(scaled ** 2 + SIGMA_DATA ** 2)
            x0 = c_skip * x + c_out * x0
            if i + 1 < len(timesteps):
                x_next = np.sqrt(a_next) * x0 + np.sqrt(1 - a_next) * renoise[i]
            else:
                x_next = x0
        if cfg.startswith("rcfg") and a_next < 1:
            # The virtual residual noise: what x_next carries beyond the
            # scaled clean estimate.
            residual = (x_next - np.sqrt(a_next) * x0) / np.sqrt(1 - a_next)
        x = x_next
    return x.astype(np.float32)
