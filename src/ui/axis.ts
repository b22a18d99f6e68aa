/** A Svelte action that lets d3 own one axis group: d3 draws ticks, Svelte owns everything else. */
import { type Axis, type AxisDomain, select } from 'd3';

export function axis<Domain extends AxisDomain>(node: SVGGElement, generator: Axis<Domain>) {
  const draw = (g: Axis<Domain>) => {
    select(node).call(g);
  };
  draw(generator);
  return { update: draw };
}
