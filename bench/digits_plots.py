"""The figures of bench/digits_table.py (matplotlib, written next to its table)."""
import utils


def plots(figures, curves, rows, out):
  """<out>.png: the samples of each row (first seed); <out>_robust.png (`plot_probes`); with ‖ε̂‖
  curves, <out>_es.png: FD against Epsilon Scaling's b, and sampling's ‖ε̂‖ against training's."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, len(figures), figsize=(2.2 * len(figures), 2.6), squeeze=False)
  for ax, (name, images) in zip(axes[0], figures.items()):
    ax.imshow(utils.image_grid(images[:64], nrow=8)[..., 0], cmap="gray", vmin=0, vmax=255)
    ax.set_title(name, fontsize=8)
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(f'{out}.png', dpi=120)
  plt.close(fig)
  plot_probes(plt, [r for r in rows if 'probe' in r], out)
  if not curves:
    return
  fig, (ax_fd, ax_norm) = plt.subplots(1, 2, figsize=(9, 3.5))
  for solver in ('euler', 'heun'):
    es = [r for r in rows if 'b' in r and solver in r['row']]
    ax_fd.errorbar([r['b'] for r in es], [r['fd'] for r in es], fmt='o-', label=solver,
                   yerr=[r['fd_se'] or 0. for r in es], capsize=3)
  ax_fd.set(xlabel='b (ε̂ / b)', ylabel='FD₂₉₇', title='Epsilon Scaling')
  ax_fd.legend()
  for name, (sigmas, sample_norms, train_norms) in curves.items():
    ax_norm.plot(sigmas, sample_norms, 'o-', label=f'sampling, {name}')
    ax_norm.plot(sigmas, train_norms, 'x--', label=f'training (noised test digits), {name}')
  ax_norm.set(xscale='log', xlabel='σ', ylabel='mean ‖ε̂‖', title='‖ε̂‖ per step')
  ax_norm.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(f'{out}_es.png', dpi=120)
  plt.close(fig)


def plot_probes(plt, probed, out):
  """<out>_robust.png: per D and probe, the FD's rise over the unprobed sampler (symlog), and that
  rise minus EDM's under the same probe (below 0: more robust than EDM), ± standard errors."""
  if not probed:
    return
  labels = list(dict.fromkeys(r['probe'] for r in probed))
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  for D in dict.fromkeys(r['D'] for r in probed):
    by_probe = {r['probe']: r['deltas'] for r in probed if r['D'] == D}
    for ax, k in zip(axes, (0, 1)):
      if all(len(by_probe[p]) > k for p in labels):
        ax.errorbar(range(len(labels)), [by_probe[p][k][2] for p in labels], capsize=3,
                    yerr=[by_probe[p][k][3] or 0. for p in labels], fmt='o-', label=f'D = {D:g}')
  axes[0].set(yscale='symlog', ylabel='FD₂₉₇ rise over the unprobed sampler')
  axes[1].set(ylabel="rise minus EDM's (D = ∞), paired by seed")
  for ax in axes:
    ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    ax.axhline(0, color='gray', lw=0.5)
    if ax.get_legend_handles_labels()[0]:     # the right panel needs EDM's row
      ax.legend(fontsize=7)
  fig.suptitle('PFGM++ robustness probes (Xu+23 §6)')
  fig.tight_layout()
  fig.savefig(f'{out}_robust.png', dpi=120)
  plt.close(fig)
