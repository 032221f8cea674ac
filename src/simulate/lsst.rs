//! Rubin (LSST)-shaped alerts after Fink's processing, with the sizes and
//! shapes of real ones: `diaSource` (the 98 fields of lsst.v10_0, as in
//! `../shared/data/lsst/science`), `diaObject` (82 fields; null for known
//! asteroids), the `prvDiaSources` and `prvDiaForcedSources` histories, three
//! uncompressed FITS cutouts of 34,560 bytes, and Fink's `xm`, `clf`, `pred`
//! and `misc`.
//!
//! The fields the catalogue's filters read get values spread so that each
//! filter keeps some alerts and drops others; the others get noise of their
//! type, so that bytes, decoding and encoding cost what real ones do.
//!
//! Histories (Rubin's DPDD, LSE-163: an alert carries its object's detections
//! and forced photometry of the last 12 months), per alert:
//! - 10% known asteroids: no object, no history;
//! - 8% first detections: no history;
//! - 12% young transients: 1-6 earlier detections within 8 days, as many
//!   forced measurements plus up to 3;
//! - 70% established objects: detections log-normal (median
//!   [`MEDIAN_DETECTIONS`], sigma 0.7, at most 1,500) over 30-365 days, and
//!   1-1.6 times as many forced measurements (visits that did not detect it).
//!
//! With the cutouts of the sample alerts (104 KB of the packet), this gives
//! a median Avro packet of ~176 KB, Fink's measured median (Data Transfer
//! documentation, April 2026). Fink attributes ~116 KB of it to
//! `prvDiaSources`, which would leave less than the sample's cutouts: the
//! total and the cutouts are kept, and the histories fill the rest.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{
    new_null_array, Array, ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array,
    ListArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields, Schema};

use super::Rng;

/// Rubin's `diaSource`, as in the sample alerts, in order (name:type; l
/// long, i int, d double, f float, b boolean, s string). `prvDiaSources`
/// items have the same fields.
const DIA_SOURCE: &str = "diaSourceId:l,visit:l,detector:i,diaObjectId:l,ssObjectId:l,parentDiaSourceId:l,\
midpointMjdTai:d,ra:d,raErr:f,dec:d,decErr:f,ra_dec_Cov:f,x:f,xErr:f,y:f,yErr:f,centroid_flag:b,apFlux:f,\
apFluxErr:f,apFlux_flag:b,apFlux_flag_apertureTruncated:b,isNegative:b,snr:f,psfFlux:f,psfFluxErr:f,psfLnL:f,\
psfChi2:f,psfNdata:i,psfFlux_flag:b,psfFlux_flag_edge:b,psfFlux_flag_noGoodPixels:b,trailFlux:f,trailFluxErr:f,\
trailRa:d,trailRaErr:f,trailDec:d,trailDecErr:f,trailLength:f,trailLengthErr:f,trailAngle:f,trailAngleErr:f,\
trailChi2:f,trailNdata:i,trail_flag_edge:b,dipoleMeanFlux:f,dipoleMeanFluxErr:f,dipoleFluxDiff:f,\
dipoleFluxDiffErr:f,dipoleLength:f,dipoleAngle:f,dipoleChi2:f,dipoleNdata:i,scienceFlux:f,scienceFluxErr:f,\
forced_PsfFlux_flag:b,forced_PsfFlux_flag_edge:b,forced_PsfFlux_flag_noGoodPixels:b,templateFlux:f,\
templateFluxErr:f,ixx:f,iyy:f,ixy:f,ixxPSF:f,iyyPSF:f,ixyPSF:f,shape_flag:b,shape_flag_no_pixels:b,\
shape_flag_not_contained:b,shape_flag_parent_source:b,extendedness:f,reliability:f,band:s,isDipole:b,\
dipoleFitAttempted:b,timeProcessedMjdTai:d,timeWithdrawnMjdTai:d,bboxSize:i,pixelFlags:b,pixelFlags_bad:b,\
pixelFlags_cr:b,pixelFlags_crCenter:b,pixelFlags_edge:b,pixelFlags_nodata:b,pixelFlags_nodataCenter:b,\
pixelFlags_interpolated:b,pixelFlags_interpolatedCenter:b,pixelFlags_offimage:b,pixelFlags_saturated:b,\
pixelFlags_saturatedCenter:b,pixelFlags_suspect:b,pixelFlags_suspectCenter:b,pixelFlags_streak:b,\
pixelFlags_streakCenter:b,pixelFlags_injected:b,pixelFlags_injectedCenter:b,pixelFlags_injected_template:b,\
pixelFlags_injected_templateCenter:b,glint_trail:b";

/// Rubin's `diaObject`, as in the sample alerts.
const DIA_OBJECT: &str = "diaObjectId:l,validityStartMjdTai:d,ra:d,raErr:f,dec:d,decErr:f,ra_dec_Cov:f,\
u_psfFluxMean:f,u_psfFluxMeanErr:f,u_psfFluxSigma:f,u_psfFluxNdata:i,u_fpFluxMean:f,u_fpFluxMeanErr:f,\
g_psfFluxMean:f,g_psfFluxMeanErr:f,g_psfFluxSigma:f,g_psfFluxNdata:i,g_fpFluxMean:f,g_fpFluxMeanErr:f,\
r_psfFluxMean:f,r_psfFluxMeanErr:f,r_psfFluxSigma:f,r_psfFluxNdata:i,r_fpFluxMean:f,r_fpFluxMeanErr:f,\
i_psfFluxMean:f,i_psfFluxMeanErr:f,i_psfFluxSigma:f,i_psfFluxNdata:i,i_fpFluxMean:f,i_fpFluxMeanErr:f,\
z_psfFluxMean:f,z_psfFluxMeanErr:f,z_psfFluxSigma:f,z_psfFluxNdata:i,z_fpFluxMean:f,z_fpFluxMeanErr:f,\
y_psfFluxMean:f,y_psfFluxMeanErr:f,y_psfFluxSigma:f,y_psfFluxNdata:i,y_fpFluxMean:f,y_fpFluxMeanErr:f,\
u_scienceFluxMean:f,u_scienceFluxMeanErr:f,g_scienceFluxMean:f,g_scienceFluxMeanErr:f,r_scienceFluxMean:f,\
r_scienceFluxMeanErr:f,i_scienceFluxMean:f,i_scienceFluxMeanErr:f,z_scienceFluxMean:f,z_scienceFluxMeanErr:f,\
y_scienceFluxMean:f,y_scienceFluxMeanErr:f,u_psfFluxMin:f,u_psfFluxMax:f,u_psfFluxMaxSlope:f,u_psfFluxErrMean:f,\
g_psfFluxMin:f,g_psfFluxMax:f,g_psfFluxMaxSlope:f,g_psfFluxErrMean:f,r_psfFluxMin:f,r_psfFluxMax:f,\
r_psfFluxMaxSlope:f,r_psfFluxErrMean:f,i_psfFluxMin:f,i_psfFluxMax:f,i_psfFluxMaxSlope:f,i_psfFluxErrMean:f,\
z_psfFluxMin:f,z_psfFluxMax:f,z_psfFluxMaxSlope:f,z_psfFluxErrMean:f,y_psfFluxMin:f,y_psfFluxMax:f,\
y_psfFluxMaxSlope:f,y_psfFluxErrMean:f,firstDiaSourceMjdTai:d,lastDiaSourceMjdTai:d,nDiaSources:i";

/// Rubin's `prvDiaForcedSources` items, as in the sample alerts.
const DIA_FORCED_SOURCE: &str = "diaForcedSourceId:l,diaObjectId:l,ra:d,dec:d,visit:l,detector:i,psfFlux:f,\
psfFluxErr:f,midpointMjdTai:d,scienceFlux:f,scienceFluxErr:f,band:s,timeProcessedMjdTai:d,timeWithdrawnMjdTai:d";

/// Fields null in every sample alert (fits Rubin does not run yet).
const ALWAYS_NULL: &[&str] =
    &["psfLnL", "trailRaErr", "trailDecErr", "trailLengthErr", "trailAngleErr", "trailChi2", "timeWithdrawnMjdTai"];

/// Median number of earlier detections of an established object.
pub const MEDIAN_DETECTIONS: f64 = 240.0;

fn fields(spec: &str) -> impl Iterator<Item = (&str, char)> {
    spec.split(',').map(|p| {
        let (n, t) = p.split_once(':').expect("name:type");
        (n, t.chars().next().expect("type"))
    })
}

fn dtype(t: char) -> DataType {
    match t {
        'l' => DataType::Int64,
        'i' => DataType::Int32,
        'd' => DataType::Float64,
        'f' => DataType::Float32,
        'b' => DataType::Boolean,
        _ => DataType::Utf8,
    }
}

/// `n` values of a field no filter reads: noise of its type (random bits
/// compress, decode and encode as measurements do), or null where Rubin
/// leaves it null.
fn filler(rng: &mut Rng, name: &str, t: char, n: usize) -> ArrayRef {
    if ALWAYS_NULL.contains(&name) {
        return new_null_array(&dtype(t), n);
    }
    match t {
        'l' => Arc::new(Int64Array::from_iter_values((0..n).map(|_| rng.below(1 << 42) as i64))),
        'i' => Arc::new(Int32Array::from_iter_values((0..n).map(|_| rng.below(4096) as i32))),
        'd' => Arc::new(Float64Array::from_iter_values((0..n).map(|_| 61000.0 + rng.range(0.0, 400.0)))),
        'f' => Arc::new(Float32Array::from_iter_values((0..n).map(|_| rng.range(-500.0, 500.0) as f32))),
        'b' => Arc::new(BooleanArray::from_iter((0..n).map(|_| Some(rng.below(200) == 0)))),
        _ => Arc::new(StringArray::from_iter_values((0..n).map(|_| BANDS[rng.below(6) as usize]))),
    }
}

/// Columns of a struct being built.
#[derive(Default)]
struct Cols {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl Cols {
    fn add(&mut self, name: &str, a: ArrayRef) {
        self.fields.push(Field::new(name, a.data_type().clone(), true));
        self.arrays.push(a);
    }
    fn i64(&mut self, name: &str, v: Vec<Option<i64>>) {
        self.add(name, Arc::new(Int64Array::from(v)));
    }
    fn i32(&mut self, name: &str, v: Vec<Option<i32>>) {
        self.add(name, Arc::new(Int32Array::from(v)));
    }
    fn f64(&mut self, name: &str, v: Vec<Option<f64>>) {
        self.add(name, Arc::new(Float64Array::from(v)));
    }
    fn f32(&mut self, name: &str, v: Vec<Option<f32>>) {
        self.add(name, Arc::new(Float32Array::from(v)));
    }
    fn bool(&mut self, name: &str, v: Vec<Option<bool>>) {
        self.add(name, Arc::new(BooleanArray::from(v)));
    }
    fn str(&mut self, name: &str, v: Vec<Option<String>>) {
        self.add(name, Arc::new(StringArray::from(v)));
    }
    fn into_struct(self, valid: Option<Vec<bool>>) -> StructArray {
        StructArray::new(Fields::from(self.fields), self.arrays, valid.map(NullBuffer::from))
    }
    /// The struct of Rubin's `spec`, in its order: these columns where
    /// given, [`filler`] for the others.
    fn into_rubin(self, spec: &str, n: usize, rng: &mut Rng, valid: Option<Vec<bool>>) -> StructArray {
        let mut given: HashMap<String, ArrayRef> =
            self.fields.iter().map(|f| f.name().clone()).zip(self.arrays).collect();
        let mut out = Cols::default();
        for (name, t) in fields(spec) {
            let a = given.remove(name).unwrap_or_else(|| filler(rng, name, t, n));
            assert_eq!(a.data_type(), &dtype(t), "simulated {name} has Rubin's type");
            out.add(name, a);
        }
        assert!(given.is_empty(), "simulated fields Rubin does not have: {:?}", given.keys());
        out.into_struct(valid)
    }
}

/// A list column of Rubin structs: `offsets` delimit each alert's items,
/// null where it has none.
fn list(items: StructArray, offsets: Vec<i32>) -> ListArray {
    let valid: Vec<bool> = offsets.windows(2).map(|w| w[1] > w[0]).collect();
    let item = Arc::new(Field::new("element", items.data_type().clone(), true));
    ListArray::new(item, OffsetBuffer::new(offsets.into()), Arc::new(items), Some(NullBuffer::from(valid)))
}

/// Quality flags Fink's Rubin blocks test (`b_good_quality`).
const FLAGS: &[&str] = &[
    "isDipole",
    "pixelFlags",
    "pixelFlags_bad",
    "pixelFlags_saturated",
    "pixelFlags_streakCenter",
    "pixelFlags_interpolated",
    "pixelFlags_cr",
    "pixelFlags_nodata",
    "pixelFlags_streak",
    "pixelFlags_edge",
    "psfFlux_flag",
    "apFlux_flag",
    "forced_PsfFlux_flag",
    "forced_PsfFlux_flag_edge",
    "shape_flag",
    "centroid_flag",
];

const BANDS: &[&str] = &["u", "g", "r", "i", "z", "y"];

/// SIMBAD types as Fink's xm module writes them (null: no match).
const SIMBAD: &[(&str, u32)] =
    &[("Unknown", 30), ("Fail", 2), ("Star", 10), ("EB*", 5), ("RRLyr", 3), ("QSO", 3), ("Galaxy", 5), ("SN", 2)];

/// nJy of an AB magnitude (Rubin's zero point 31.4).
fn flux(mag: f64) -> f64 {
    10f64.powf((31.4 - mag) / 2.5)
}

/// An alert's history: earlier detections and forced measurements, over
/// how many days (see the module's notes).
struct History {
    detections: usize,
    forced: usize,
    days: f64,
}

fn history(rng: &mut Rng, sso: bool) -> History {
    if sso {
        return History { detections: 0, forced: 0, days: 0.0 };
    }
    match rng.below(100) {
        0..=8 => History { detections: 0, forced: 0, days: 0.0 },
        9..=21 => {
            let d = 1 + rng.below(6) as usize;
            History { detections: d, forced: d + rng.below(4) as usize, days: rng.range(0.3, 8.0) }
        }
        _ => {
            let d = (MEDIAN_DETECTIONS.ln() + 0.7 * rng.normal(0.0, 1.0)).exp().clamp(2.0, 1500.0) as usize;
            History { detections: d, forced: (d as f64 * rng.range(1.0, 1.6)) as usize, days: rng.range(30.0, 365.0) }
        }
    }
}

/// `k` times in the `days` before `mjd`, oldest first.
fn times(rng: &mut Rng, mjd: f64, days: f64, k: usize) -> Vec<f64> {
    let mut t: Vec<f64> = (0..k).map(|_| mjd - 0.02 - rng.f64() * days).collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t
}

/// One Rubin-shaped alert per row; `next_id` numbers the sources.
pub fn batch(rng: &mut Rng, n: usize, next_id: &mut i64, night: usize, pools: &[Vec<Vec<u8>>]) -> RecordBatch {
    let mut ids = Vec::with_capacity(n);
    let mut sso = Vec::with_capacity(n);
    let mut mjd = Vec::with_capacity(n);
    let mut radec = Vec::with_capacity(n);
    for _ in 0..n {
        *next_id += 1 + rng.below(5000) as i64;
        ids.push(169_813_000_000_000_000 + *next_id);
        sso.push(rng.below(10) == 0);
        mjd.push(61041.0 + night as f64 + rng.range(0.0, 0.4));
        // Uniform on the sphere.
        radec.push((rng.range(0.0, 360.0), rng.range(-1.0, 1.0).asin().to_degrees()));
    }
    let object_ids: Vec<i64> = (0..n).map(|_| rng.below(1 << 50) as i64).collect();
    // Rubin numbers visits by day (YYYYMMDD) and sequence.
    let visit = 2_026_010_100_000 + night as i64 * 100_000 + rng.below(1000) as i64;

    // diaSource
    let mut s = Cols::default();
    s.i64("diaSourceId", ids.iter().map(|i| Some(*i)).collect());
    s.i64("visit", vec![Some(visit); n]);
    s.i64("diaObjectId", (0..n).map(|i| (!sso[i]).then_some(object_ids[i])).collect());
    s.i64("ssObjectId", (0..n).map(|i| sso[i].then(|| rng.below(1 << 40) as i64)).collect());
    s.f64("midpointMjdTai", mjd.iter().map(|m| Some(*m)).collect());
    s.f64("ra", radec.iter().map(|r| Some(r.0)).collect());
    s.f64("dec", radec.iter().map(|r| Some(r.1)).collect());
    let negative: Vec<bool> = (0..n).map(|_| rng.below(5) == 0).collect();
    let mags: Vec<f64> = (0..n).map(|_| rng.range(16.0, 24.5)).collect();
    let fluxes: Vec<f64> = (0..n).map(|i| if negative[i] { -flux(mags[i]) } else { flux(mags[i]) }).collect();
    // S/N from about 2 to 200: noise of a fraction of the flux.
    let errs: Vec<f64> = (0..n).map(|i| fluxes[i].abs() / rng.range(2.0, 200.0)).collect();
    s.f32("psfFlux", fluxes.iter().map(|f| Some(*f as f32)).collect());
    s.f32("psfFluxErr", errs.iter().map(|e| Some(*e as f32)).collect());
    s.f32("snr", (0..n).map(|i| Some((fluxes[i].abs() / errs[i]) as f32)).collect());
    s.bool("isNegative", negative.iter().map(|b| Some(*b)).collect());
    let bands: Vec<usize> = (0..n).map(|_| rng.below(6) as usize).collect();
    s.str("band", bands.iter().map(|b| Some(BANDS[*b].to_string())).collect());
    s.f32("reliability", (0..n).map(|_| Some(rng.f64() as f32)).collect());
    s.f32("extendedness", (0..n).map(|_| Some(rng.f64() as f32)).collect());
    for f in FLAGS {
        s.bool(f, (0..n).map(|_| Some(rng.below(100) == 0)).collect());
    }
    // Trails (faint_trails): most sources are points, a few long streaks;
    // null where the trail fit failed, as in Rubin's alerts.
    let trail_length: Vec<Option<f32>> =
        (0..n).map(|_| if rng.below(3) == 0 { None } else { Some(rng.range(0.0, 1.0).powi(3) as f32 * 8.0) }).collect();
    s.f32("trailLength", trail_length.clone());
    s.f32("trailFlux", (0..n).map(|i| Some((fluxes[i] * rng.range(0.5, 1.5)) as f32)).collect());
    let dia_source = s.into_rubin(DIA_SOURCE, n, rng, None);

    // The histories: earlier detections (prvDiaSources, all of a
    // diaSource's fields) and forced photometry (prvDiaForcedSources).
    let hist: Vec<History> = sso.iter().map(|s| history(rng, *s)).collect();
    let mut first_seen = mjd.clone();
    let mut band_counts = vec![[0i32; 6]; n];
    let (mut offsets, mut f_offsets) = (vec![0i32], vec![0i32]);
    let mut p = HistoryCols::default();
    let mut f = HistoryCols::default();
    for i in 0..n {
        band_counts[i][bands[i]] += 1;
        let h = &hist[i];
        for (j, t) in times(rng, mjd[i], h.days, h.detections).into_iter().enumerate() {
            // A young transient is followed up in its discovery band half
            // the time (Rubin's paired visits); older ones in any band.
            let b = if h.days < 10.0 && rng.below(2) == 0 { bands[i] } else { rng.below(6) as usize };
            band_counts[i][b] += 1;
            first_seen[i] = first_seen[i].min(t);
            p.push(ids[i] - 1 - j as i64, object_ids[i], radec[i], t, b, fluxes[i] * rng.range(0.5, 1.5), errs[i]);
        }
        offsets.push(p.len() as i32);
        for (j, t) in times(rng, mjd[i], h.days, h.forced).into_iter().enumerate() {
            let b = rng.below(6) as usize;
            f.push(ids[i] * 7 + j as i64, object_ids[i], radec[i], t, b, fluxes[i] * rng.range(-0.2, 1.2), errs[i]);
        }
        f_offsets.push(f.len() as i32);
    }
    let prv_n = p.len();
    let mut pc = p.into_cols("diaSourceId");
    pc.i64("ssObjectId", vec![None; prv_n]);
    let prv = list(pc.into_rubin(DIA_SOURCE, prv_n, rng, None), offsets);
    let forced_n = f.len();
    let forced = list(f.into_cols("diaForcedSourceId").into_rubin(DIA_FORCED_SOURCE, forced_n, rng, None), f_offsets);
    let counts: Vec<i32> = hist.iter().map(|h| h.detections as i32 + 1).collect();

    // diaObject: null for solar system objects.
    let mut o = Cols::default();
    o.i64("diaObjectId", object_ids.iter().map(|i| Some(*i)).collect());
    o.f64("ra", radec.iter().map(|r| Some(r.0)).collect());
    o.f64("dec", radec.iter().map(|r| Some(r.1)).collect());
    o.i32("nDiaSources", counts.iter().map(|c| Some(*c)).collect());
    o.f64("firstDiaSourceMjdTai", first_seen.iter().map(|t| Some(*t)).collect());
    o.f64("lastDiaSourceMjdTai", mjd.iter().map(|t| Some(*t)).collect());
    for (k, b) in BANDS.iter().enumerate() {
        o.f32(&format!("{b}_psfFluxMean"), fluxes.iter().map(|f| Some((f.abs() * 0.9) as f32)).collect());
        o.f32(&format!("{b}_psfFluxMeanErr"), errs.iter().map(|e| Some(*e as f32)).collect());
        // The brightest point and the detections in each band (the
        // extragalactic filters' sampling and peak absolute magnitude).
        o.f32(
            &format!("{b}_psfFluxMax"),
            fluxes.iter().map(|f| Some((f.abs() * rng.range(1.0, 1.4)) as f32)).collect(),
        );
        o.i32(&format!("{b}_psfFluxNdata"), band_counts.iter().map(|c| Some(c[k])).collect());
    }
    let dia_object = o.into_rubin(DIA_OBJECT, n, rng, Some(sso.iter().map(|s| !s).collect()));

    // Fink's cross-matches, classifiers and predictions.
    let mut x = Cols::default();
    x.str(
        "simbad_otype",
        (0..n).map(|_| if rng.below(5) < 2 { None } else { Some(super::pick(rng, SIMBAD).to_string()) }).collect(),
    );
    x.str(
        "tns_fullname",
        (0..n).map(|_| (rng.below(100) < 3).then(|| format!("2026{}", rng.below(100_000)))).collect(),
    );
    // Mangrove galaxies (luminosity distance, Mpc), Gaia DR3 stars with
    // their parallaxes and VSX variables: matched for a minority of alerts,
    // as in Fink's cross-match (fink-filters' extragalactic blocks).
    x.f32("mangrove_lum_dist", (0..n).map(|_| (rng.below(10) < 3).then(|| rng.range(5.0, 400.0) as f32)).collect());
    let gaia: Vec<bool> = (0..n).map(|_| rng.below(10) < 2).collect();
    x.str("gaiadr3_DR3Name", gaia.iter().map(|g| g.then(|| format!("Gaia DR3 {}", rng.below(1 << 62)))).collect());
    x.f32("gaiadr3_Plx", gaia.iter().map(|g| g.then(|| rng.range(-0.5, 5.0) as f32)).collect());
    x.f32("gaiadr3_e_Plx", gaia.iter().map(|g| g.then(|| rng.range(0.02, 1.0) as f32)).collect());
    x.str(
        "vsx_Type",
        (0..n)
            .map(|_| {
                (rng.below(20) == 0)
                    .then(|| super::pick(rng, &[("EA", 3), ("RRAB", 2), ("M", 1), ("ROT", 2), ("SR", 1)]).to_string())
            })
            .collect(),
    );
    x.f32(
        "legacydr8_zphot",
        (0..n).map(|_| if rng.below(3) == 0 { None } else { Some(rng.range(0.0, 1.2) as f32) }).collect(),
    );
    let xm = x.into_struct(None);
    let mut c = Cols::default();
    c.f32("snnSnVsOthers_score", (0..n).map(|_| Some(rng.f64().powf(1.5) as f32)).collect());
    c.i32("cats_class", (0..n).map(|_| Some([11, 11, 12, 13, 21, 22, 31, 32][rng.below(8) as usize])).collect());
    c.f32("cats_score", (0..n).map(|_| Some(rng.f64().sqrt() as f32)).collect());
    c.f64("earlySNIa_score", (0..n).map(|_| Some(rng.f64())).collect());
    c.f32("elephant_kstest_science", (0..n).map(|_| Some(rng.f64() as f32)).collect());
    c.f32(
        "elephant_kstest_template",
        (0..n).map(|_| if rng.below(10) == 0 { None } else { Some(rng.f64() as f32) }).collect(),
    );
    let clf = c.into_struct(None);
    let mut pr = Cols::default();
    pr.fields.push(Field::new("is_sso", DataType::Boolean, false));
    pr.arrays.push(Arc::new(BooleanArray::from(sso.clone())));
    pr.bool("is_first", counts.iter().map(|c| Some(*c == 1)).collect());
    pr.bool("is_cataloged", (0..n).map(|_| Some(rng.below(2) == 0)).collect());
    let pred = pr.into_struct(None);
    let mut m = Cols::default();
    // Rubin does not set it yet: Fink uses the oldest date in the history.
    m.f64("firstDiaSourceMjdTaiFink", first_seen.iter().map(|t| Some(*t)).collect());
    let misc = m.into_struct(None);

    let mut top = Cols::default();
    top.i64("diaSourceId", ids.iter().map(|i| Some(*i)).collect());
    top.add("diaSource", Arc::new(dia_source));
    top.add("prvDiaSources", Arc::new(prv));
    top.add("prvDiaForcedSources", Arc::new(forced));
    top.add("diaObject", Arc::new(dia_object));
    // Rubin's cutouts: uncompressed FITS, three HDUs (image, variance,
    // mask) of 30x30 pixels, 34,560 bytes as in the sample alerts. A source
    // with a long trail gets a streak (faint_trails measures elongation).
    let points = &pools[0];
    let streaks = &pools[1];
    let trailed: Vec<bool> = trail_length.iter().map(|l| l.is_some_and(|l| l > 2.0)).collect();
    for (k, name) in ["cutoutDifference", "cutoutScience", "cutoutTemplate"].iter().enumerate() {
        let stamps: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let pool = if trailed[i] && k != 2 { streaks } else { points };
                let mut stamp = pool[rng.below(pool.len() as u64) as usize].clone();
                // Each stamp its own bytes, in the last HDU's padding: the
                // images stay as they are.
                let l = stamp.len();
                stamp[l - 8..l - 4].copy_from_slice(&(ids[i] as u32).to_le_bytes());
                stamp
            })
            .collect();
        top.add(name, Arc::new(BinaryArray::from_iter_values(stamps.iter())));
    }
    top.str("lsst_schema_version", vec![Some("lsst.v10_0".into()); n]);
    top.add("xm", Arc::new(xm));
    top.add("clf", Arc::new(clf));
    top.add("pred", Arc::new(pred));
    top.add("misc", Arc::new(misc));
    let schema = Arc::new(Schema::new(top.fields));
    RecordBatch::try_new(schema, top.arrays).expect("columns match the schema")
}

/// The measured columns of history items (earlier detections or forced
/// photometry); the others are [`filler`].
#[derive(Default)]
struct HistoryCols {
    id: Vec<i64>,
    object: Vec<i64>,
    ra: Vec<f64>,
    dec: Vec<f64>,
    mjd: Vec<f64>,
    band: Vec<&'static str>,
    flux: Vec<f32>,
    err: Vec<f32>,
}

impl HistoryCols {
    #[allow(clippy::too_many_arguments)]
    fn push(&mut self, id: i64, object: i64, radec: (f64, f64), mjd: f64, band: usize, flux: f64, err: f64) {
        self.id.push(id);
        self.object.push(object);
        self.ra.push(radec.0);
        self.dec.push(radec.1);
        self.mjd.push(mjd);
        self.band.push(BANDS[band]);
        self.flux.push(flux as f32);
        self.err.push(err as f32);
    }
    fn len(&self) -> usize {
        self.id.len()
    }
    fn into_cols(self, id: &str) -> Cols {
        let mut c = Cols::default();
        c.add(id, Arc::new(Int64Array::from(self.id)));
        c.add("diaObjectId", Arc::new(Int64Array::from(self.object)));
        c.add("ra", Arc::new(Float64Array::from(self.ra)));
        c.add("dec", Arc::new(Float64Array::from(self.dec)));
        c.add("midpointMjdTai", Arc::new(Float64Array::from(self.mjd)));
        c.add("band", Arc::new(StringArray::from(self.band)));
        c.add("psfFlux", Arc::new(Float32Array::from(self.flux)));
        c.add("psfFluxErr", Arc::new(Float32Array::from(self.err)));
        c
    }
}

/// The cutout pools of a Rubin simulation: point sources, then streaks.
pub fn cutout_pools(rng: &mut Rng) -> Vec<Vec<Vec<u8>>> {
    vec![(0..48).map(|_| rubin_cutout(rng, false)).collect(), (0..16).map(|_| rubin_cutout(rng, true)).collect()]
}

/// One FITS HDU: a header of two 2880-byte blocks (Rubin's carry WCS and
/// provenance cards) and 30x30 float32 pixels.
fn hdu(first: bool, pixels: &[f32]) -> Vec<u8> {
    let mut cards: Vec<String> = vec![
        if first { "SIMPLE  =                    T".into() } else { "XTENSION= 'IMAGE   '".into() },
        "BITPIX  =                  -32".into(),
        "NAXIS   =                    2".into(),
        "NAXIS1  =                   30".into(),
        "NAXIS2  =                   30".into(),
    ];
    if !first {
        cards.push("PCOUNT  =                    0".into());
        cards.push("GCOUNT  =                    1".into());
    }
    cards.push("ORIGIN  = 'fink simulate'".into());
    while cards.len() < 40 {
        cards.push(format!("COMMENT card {} of the simulated header", cards.len()));
    }
    cards.push("END".into());
    let mut out: Vec<u8> = cards.iter().flat_map(|c| format!("{c:<80}").into_bytes()).collect();
    out.resize(2 * 2880, b' ');
    for p in pixels {
        out.extend_from_slice(&p.to_be_bytes());
    }
    out.resize(4 * 2880, 0);
    out
}

/// Image, variance and mask of a point source or a streak.
fn rubin_cutout(rng: &mut Rng, streak: bool) -> Vec<u8> {
    let (cx, cy) = (rng.range(13.0, 17.0), rng.range(13.0, 17.0));
    let amp = rng.range(50.0, 2000.0);
    let angle = rng.range(0.0, std::f64::consts::PI);
    let (ux, uy) = (angle.cos(), angle.sin());
    let mut image = Vec::with_capacity(900);
    for y in 0..30 {
        for x in 0..30 {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            // Distance to the source: to its centre, or to a 16-pixel segment.
            let r2 = if streak {
                let t = (dx * ux + dy * uy).clamp(-8.0, 8.0);
                (dx - t * ux).powi(2) + (dy - t * uy).powi(2)
            } else {
                dx * dx + dy * dy
            };
            image.push((rng.normal(0.0, 8.0) + amp * (-r2 / 2.0).exp()) as f32);
        }
    }
    let variance = vec![64.0f32; 900];
    let mask = vec![0.0f32; 900];
    let mut out = hdu(true, &image);
    out.extend(hdu(false, &variance));
    out.extend(hdu(false, &mask));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;

    fn alerts(n: usize) -> RecordBatch {
        let mut rng = Rng::new(11);
        let pools = cutout_pools(&mut rng);
        let mut id = 0;
        let batches: Vec<RecordBatch> = (0..n).step_by(200).map(|_| batch(&mut rng, 200, &mut id, 0, &pools)).collect();
        arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    /// The shapes of the sample alerts, and Fink's measured median size.
    #[test]
    fn rubin_alerts_have_real_shapes_and_a_median_of_about_176_kb() {
        let b = alerts(1000);
        let width = |c: &str| match b.schema().field_with_name(c).unwrap().data_type() {
            DataType::Struct(f) => f.len(),
            DataType::List(i) => match i.data_type() {
                DataType::Struct(f) => f.len(),
                _ => 0,
            },
            _ => 0,
        };
        assert_eq!((width("diaSource"), width("prvDiaSources")), (98, 98));
        assert_eq!((width("diaObject"), width("prvDiaForcedSources")), (82, 14));
        assert_eq!(
            b.schema().field_with_name("diaSource").unwrap().data_type(),
            match b.schema().field_with_name("prvDiaSources").unwrap().data_type() {
                DataType::List(i) => i.data_type(),
                _ => unreachable!(),
            }
        );

        let mut enc = crate::stream::encode::AvroEncoder::new(&b.schema()).unwrap();
        let rows = enc.encode(&b).unwrap();
        let mut sizes: Vec<usize> = (0..rows.len()).map(|i| rows.row(i).unwrap().len()).collect();
        sizes.sort();
        let median = sizes[sizes.len() / 2];
        assert!((160_000..195_000).contains(&median), "median Avro packet {median} bytes");
        assert!(sizes[0] > 104_000, "every alert carries its three cutouts: {}", sizes[0]);
        assert!(*sizes.last().unwrap() > 400_000, "long histories make a tail: {}", sizes.last().unwrap());

        // Histories as described: none for asteroids and first detections.
        let prv = b.column_by_name("prvDiaSources").unwrap().as_list::<i32>();
        let empty = (0..b.num_rows()).filter(|i| prv.is_null(*i)).count();
        assert!((150..320).contains(&empty), "{empty} of 1000 without history");
        let objects = b.column_by_name("diaObject").unwrap();
        assert!((50..150).contains(&objects.null_count()), "{} asteroids", objects.null_count());
    }
}
