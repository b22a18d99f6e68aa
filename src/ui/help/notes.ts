/** The "what am I looking at" note of each panel: a few sentences, one click away (HelpNote.svelte). */
export const HELP_NOTES = {
  influence: {
    title: 'Block influence',
    text: [
      'A transformer is a stack of blocks; each adds its update to the residual stream that carries every token. This chart shows, per block, how much that update changes the stream on the calibration text.',
      'Block Influence (BI) is 1 − the mean cosine between a token’s vector entering and leaving the block: 0 = the block changed nothing. Low bars are the safest blocks to cut; click a bar or a block square to cut it, or use the slider.',
      'Angular distance and relative magnitude measure the same change in other ways; error bars show how much the ranking would move on other calibration text.',
    ],
  },
  compare: {
    title: 'Original vs pruned',
    text: [
      'The same prompt through the full model (left) and the model with the cut blocks skipped (right), with the same settings.',
      'Perplexity is exp(mean negative log-likelihood) of held-out text the blocks were not scored on: how surprised the model is by real text. Lower is better; the percentage is what the cut cost. The next-token list shows how the first choice shifted.',
    ],
  },
  model: {
    title: 'Model',
    text: [
      'Which checkpoint runs: the built-in model (trained here on State of the Union addresses), a Hugging Face hub id, or a folder from your disk (config.json + *.safetensors + tokenizer.json).',
      'Hub models show their download size before anything is fetched and are cached in the browser. The backend is WebGPU when the browser has it, else the CPU.',
    ],
  },
  share: {
    title: 'Share and export',
    text: [
      'Copy link: the address holds the whole experiment (model, calibration, metric, cuts, prompt, scores), so the link opens the same view elsewhere; add &present for the presenter view.',
      'Download .zip: the pruned checkpoint in Hugging Face layout. Run elsewhere: a transformers script or a mergekit config that apply the same cut on your own machines. Results: the numbers as JSON / CSV, the chart as SVG / PNG.',
    ],
  },
  strategies: {
    title: 'Strategies',
    text: [
      'Ways of choosing which blocks to cut, compared on held-out text. The sweep removes blocks one at a time by each strategy and measures perplexity after every step; the cliff is where it shoots up.',
      'The heatmap compares any two depths of the residual stream (which spans of blocks change little), the logit lens reads each depth as a next-token guess, and speed and multiple choice show what a cut buys and costs.',
    ],
  },
} as const;

export type HelpTopic = keyof typeof HELP_NOTES;
