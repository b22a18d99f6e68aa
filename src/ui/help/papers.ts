/** Where each metric comes from: the formula as the lab computes it and the paper to read. */
import type { Metric } from '../../analysis/influence.ts';

export interface MetricSource {
  formula: string;
  paper: { title: string; authors: string; url: string };
}

export const METRIC_SOURCES: Record<Metric, MetricSource> = {
  bi: {
    formula: 'BI_i = 1 − mean_t cos(x_i,t , x_i+1,t)',
    paper: { title: 'ShortGPT: Layers in Large Language Models are More Redundant Than You Expect', authors: 'Men et al., 2024', url: 'https://arxiv.org/abs/2403.03853' },
  },
  angular: {
    formula: 'angular_i = mean_t arccos(cos(x_i,t , x_i+1,t)) / π',
    paper: { title: 'The Unreasonable Ineffectiveness of the Deeper Layers', authors: 'Gromov et al., 2024', url: 'https://arxiv.org/abs/2403.17887' },
  },
  relMagnitude: {
    formula: 'relMag_i = mean_t ‖f_i(x_i,t)‖ / ‖x_i,t + f_i(x_i,t)‖',
    paper: {
      title: 'Weight subcloning: direct initialization of transformers using larger pretrained ones',
      authors: 'Samragh et al., 2023 (compared in ShortGPT)',
      url: 'https://arxiv.org/abs/2312.09299',
    },
  },
};
