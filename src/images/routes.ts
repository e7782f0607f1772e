import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { acceptRawBodies } from '../http/raw-body.js';
import type { ImageLibrary } from './library.js';

const NameParams = Type.Object({ name: Type.String({ maxLength: 128 }) });
const UploadQuery = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 128 }),
  default: Type.Optional(Type.Boolean({ description: 'make it the image Deploy uses by default' })),
  origin: Type.Optional(Type.String({ maxLength: 500, description: 'where the bytes came from, e.g. the file name' })),
  bmap: Type.Optional(Type.String({ maxLength: 64, description: 'id of a bmap uploaded to /api/images/bmaps' })),
});

/** The image library (admin token required). Uploads stream straight to disk. */
export const imageAdminRoutes: FastifyPluginAsyncTypebox<{ images: ImageLibrary }> = async (app, { images }) => {
  app.get('/api/images', async () => ({ images: await images.list(), importing: images.imports() }));

  app.get('/api/images/:name', { schema: { params: NameParams } }, async (request) => images.view(await images.requireImage(request.params.name)));

  app.delete('/api/images/:name', { schema: { params: NameParams } }, async (request, reply) => {
    await images.remove(request.params.name);
    return reply.code(204).send();
  });

  app.post('/api/images/:name/default', { schema: { params: NameParams } }, async (request) => {
    await images.setDefault(request.params.name);
    return images.view(await images.requireImage(request.params.name));
  });

  // A bmap (bmaptool's XML) for the image about to be uploaded.
  app.register(async (xml) => {
    xml.removeAllContentTypeParsers();
    xml.addContentTypeParser('*', { parseAs: 'string', bodyLimit: 16 * 1024 * 1024 }, (_request, body, done) => done(null, body));
    xml.post('/api/images/bmaps', async (request, reply) => {
      const { id, bmap } = images.addPendingBmap(String(request.body ?? ''));
      const mapped = bmap.ranges.reduce((sum, range) => sum + range.end - range.start, 0);
      return reply.code(201).send({ bmap: id, image_size: bmap.imageSize, mapped_bytes: mapped, ranges: bmap.ranges.length, checksum_type: bmap.checksumType });
    });
  });

  app.register(async (raw) => {
    acceptRawBodies(raw);
    raw.withTypeProvider<TypeBoxTypeProvider>().post('/api/images', { schema: { querystring: UploadQuery } }, async (request, reply) => {
      const length = request.headers['content-length'];
      const image = await images.addFromStream(request.raw, {
        name: request.query.name,
        origin: request.query.origin ?? null,
        makeDefault: request.query.default ?? false,
        bmap: request.query.bmap ? images.takePendingBmap(request.query.bmap) : undefined,
        expectedBytes: length === undefined ? undefined : Number(length),
      });
      return reply.code(201).send(await images.view(image));
    });
  });
};
