import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { externalBaseImages, substituteArgs } from '../../src/image/base-digests.js';

describe('externalBaseImages', () => {
  it('lists each external FROM once: not scratch, not an earlier stage, flags skipped, continuations joined', () => {
    const dockerfile = [
      '# syntax=docker/dockerfile:1',
      'FROM --platform=linux/amd64 golang:1.19 AS build',
      'RUN go build \\',
      '  ./...',
      'FROM build AS test',
      'FROM scratch',
      'COPY --from=build /out /app',
      'FROM registry.local:5000/base/busybox:1 as final',
      'FROM golang:1.19',
    ].join('\n');
    expect(externalBaseImages(dockerfile)).toEqual(['golang:1.19', 'registry.local:5000/base/busybox:1']);
  });

  it('substitutes the ARGs declared before the first FROM, build args first', () => {
    const dockerfile = 'ARG REGISTRY=127.0.0.1:5000\nARG BASE=${REGISTRY}/busybox\nARG TAG\nFROM ${BASE}:${TAG:-latest}\nARG LATER=x\nFROM $LATER\n';
    expect(externalBaseImages(dockerfile)).toEqual(['127.0.0.1:5000/busybox:latest']);
    expect(externalBaseImages(dockerfile, { TAG: '2', REGISTRY: 'r.example' })).toEqual(['r.example/busybox:2']);
  });

  it('an image named by a build arg follows the arg: two values, two base images', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9]{1,10}$/), fc.stringMatching(/^[a-z0-9]{1,10}$/), (a, b) => {
        const text = 'ARG IMAGE=default\nFROM ${IMAGE}\n';
        expect(externalBaseImages(text, { IMAGE: a })).toEqual([a === 'scratch' ? undefined : a].filter(Boolean));
        if (a !== b && a !== 'scratch' && b !== 'scratch') expect(externalBaseImages(text, { IMAGE: a })).not.toEqual(externalBaseImages(text, { IMAGE: b }));
      }),
    );
  });

  it('substituteArgs reads $X, ${X}, ${X:-d} and ${X:+a}', () => {
    expect(substituteArgs('$A-${B}-${C:-d}-${A:+set}-${C:+unset}', { A: '1', B: '2' })).toBe('1-2-d-set-');
  });
});
