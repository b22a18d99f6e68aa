import { mount } from 'svelte';
import './app.css';
import App from './ui/App.svelte';
import { keepFocusOnSwap, radioArrowKeys } from './ui/keyboard.ts';

const target = document.getElementById('app');
if (!target) throw new Error('index.html has no #app element');
// Score → Cancel and back: a keyboard user's focus follows the control that replaced the pressed one;
// arrow keys choose within the segmented switches (metric, order, …).
keepFocusOnSwap();
radioArrowKeys();
export default mount(App, { target });
